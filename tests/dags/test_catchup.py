"""Missed intervals run (issue #11): after the scheduler was down for MISSED days, starting it runs
each missed interval, one at a time, in order, through the real scheduler (API server, scheduler,
DAG processor; bench/airflow_stack.py), on a SQLite and on a PostgreSQL metadata DB.

"Down for MISSED days" is the DAG's start date MISSED days back (DETECTION_START_DATE) when the
scheduler starts: the same state a scheduler finds after MISSED days off (intervals due, no runs
for them), without moving the clock. The data (tests/dags/conftest.py) covers every window."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.dags.conftest import MISSED

pytestmark = pytest.mark.slow


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_the_missed_intervals_each_run_once_as_scheduled_runs(scheduled):
    runs = scheduled.catchup
    expected = [(scheduled.start + timedelta(days=i)).isoformat() for i in range(MISSED)]
    assert [r["interval_start"][:10] for r in runs] == expected
    assert [r["interval_end"][:10] for r in runs] == [
        (scheduled.start + timedelta(days=i + 1)).isoformat() for i in range(MISSED)
    ]
    assert runs[-1]["interval_end"][:10] == scheduled.today.isoformat(), "caught up to now"
    assert [r["state"] for r in runs] == ["success"] * MISSED, {
        r["run_id"]: scheduled.stack.task_instances(r["run_id"]) for r in runs
    }


def test_the_missed_intervals_ran_in_order_one_at_a_time(scheduled):
    runs = scheduled.catchup
    for earlier, later in zip(runs, runs[1:]):
        assert at(earlier["end_date"]) <= at(later["start_date"]), (earlier, later)


def test_every_task_of_each_caught_up_run_ran(scheduled):
    for run in scheduled.catchup:
        tasks = scheduled.stack.task_instances(run["run_id"])
        assert {t: s["state"] for t, s in tasks.items()} == dict.fromkeys(
            [
                "partitions",
                "extract_azure_activity",
                "extract_behavior_analytics",
                "validate_azure_activity",
                "validate_behavior_analytics",
                "data_docs",
                "correlate",
                "build_alerts",
                "deliver",
                "examined",
            ],
            "success",
        )


def test_each_caught_up_interval_is_on_record_in_the_alerts_asset(scheduled):
    rows = scheduled.stack.query(
        "SELECT e.source_run_id, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
        "WHERE a.uri = ?",
        ("detection://runcommand_ueba_breach/alerts",),
    )
    by_run = {run_id: extra for run_id, extra in rows}
    assert set(by_run) >= {r["run_id"] for r in scheduled.catchup}


def test_each_run_got_a_deadline_that_its_success_cleared(scheduled):
    """The deadline alert is created with each run (DAGRUN_QUEUED_AT + 6 h) and pruned when the
    run succeeds in time: none is left, and none was missed."""
    alerts = scheduled.stack.query("SELECT name, reference FROM deadline_alert")
    assert alerts and all("DagRunQueuedAtDeadline" in str(ref) for _, ref in alerts)
    assert scheduled.stack.query("SELECT id FROM deadline") == []
