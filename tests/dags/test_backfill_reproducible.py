"""Back-fills are reproducible (issue #11): `airflow backfill create` over BACKFILL_DAYS days
through the real scheduler, on a SQLite and on a PostgreSQL metadata DB (alert store: SQLite, and
a schema of the PostgreSQL run's own database), gives exactly the alerts of `detect` run over each
window (deduplicated by alert id, evidence merged), one ticket per alert and destination; a second
back-fill of the same days with `--reprocess-behavior completed` re-runs them and changes no alert
revision and opens no ticket. The days lie before DETECTION_START_DATE: a back-fill is not limited
by it. The stack is the catch-up tests' one (tests/dags/conftest.py): the first back-fill ran while
the scheduler caught up, so the expected alerts cover the caught-up windows too."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from include.detection import alerts as alerting
from include.detection.pipeline import detect
from include.detection.rule import load_rule
from include.detection.store import open_store
from tests.dags.conftest import BACKFILL_DAYS

pytestmark = pytest.mark.slow


def _canonical(row: dict) -> str:
    return json.dumps(row, sort_keys=True, default=str)


def expected_alerts(lake, window_ends) -> dict[str, set[str]]:
    """Alert id -> evidence rows, from `detect` + `build_alerts` over each window."""
    rule, out = load_rule(), {}
    for end in window_ends:
        found = detect(lake, end, rule=rule, engine="native")
        for alert in alerting.build_alerts(
            found.result, rule, found.start, found.end, found.data_quality
        ):
            out.setdefault(alert["id"], set()).update(map(_canonical, alert["evidence"]))
    return out


def snapshot(scheduled) -> dict:
    with open_store(scheduled.store_url) as store:
        stored = store.alerts()
        log = store.delivery_log()
    files = {p.name: p.stat().st_mtime_ns for p in scheduled.tickets.glob("*.json")}
    return {"alerts": {a["id"]: a for a in stored}, "log": log, "files": files}


@pytest.fixture(scope="session")
def backfilled(scheduled):
    """The back-fill's days (done by the fixture `scheduled`), back-filled again with
    --reprocess-behavior completed; the store and tickets before and after."""
    stack = scheduled.stack
    (first, last), runs = scheduled.backfill_days, scheduled.backfill
    assert last < scheduled.start, "the back-filled days lie before DETECTION_START_DATE"
    once = snapshot(scheduled)
    stack.backfill(
        first.isoformat(),
        last.isoformat(),
        max_active_runs=BACKFILL_DAYS,
        reprocess_behavior="completed",
    )
    stack.wait_for_backfill(600)
    rerun = stack.runs("backfill")
    return {
        "days": (first, last),
        "runs": runs,
        "once": once,
        "rerun_runs": rerun,
        "twice": snapshot(scheduled),
    }


def test_the_backfill_runs_each_day_before_the_start_date_to_success(scheduled, backfilled):
    first, _ = backfilled["days"]
    got = [(r["interval_start"][:10], r["state"]) for r in backfilled["runs"]]
    assert got == [
        ((first + timedelta(days=i)).isoformat(), "success") for i in range(BACKFILL_DAYS)
    ], {r["run_id"]: scheduled.stack.task_instances(r["run_id"]) for r in backfilled["runs"]}


def test_the_alerts_are_the_union_of_detect_over_each_window(scheduled, backfilled):
    ends = [
        datetime.fromisoformat(r["interval_end"]) for r in backfilled["runs"] + scheduled.catchup
    ]
    expected = expected_alerts(scheduled.lake, ends)
    stored = backfilled["once"]["alerts"]
    assert expected, "the back-filled windows hold planted true positives"
    assert sorted(stored) == sorted(expected)
    for alert_id, alert in stored.items():
        assert set(map(_canonical, alert["evidence"])) == expected[alert_id], alert_id


def test_each_alert_has_one_ticket_per_destination(backfilled):
    once = backfilled["once"]
    assert sorted(once["files"]) == sorted(f"{i}.json" for i in once["alerts"])
    for alert in once["alerts"].values():
        destinations = [t["destination"] for t in alert["tickets"]]
        assert destinations == ["file"], alert["id"]
    created = [(e["alert_id"], e["destination"]) for e in once["log"] if e["action"] == "created"]
    assert sorted(created) == sorted((i, "file") for i in once["alerts"])


def test_backfilling_again_reruns_the_days_and_changes_nothing(backfilled):
    once, twice = backfilled["once"], backfilled["twice"]
    before = {r["run_id"]: r["end_date"] for r in backfilled["runs"]}
    after = {r["run_id"]: (r["end_date"], r["state"]) for r in backfilled["rerun_runs"]}
    assert after.keys() == before.keys()
    assert all(after[i][0] > before[i] and after[i][1] == "success" for i in before), (
        "every day ran again"
    )
    assert {i: a["revision"] for i, a in twice["alerts"].items()} == {
        i: a["revision"] for i, a in once["alerts"].items()
    }
    assert twice["files"] == once["files"], "no ticket opened or rewritten"
    assert twice["log"] == once["log"], "no delivery at all"
