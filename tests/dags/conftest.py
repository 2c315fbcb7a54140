"""Fixtures of the DAG tests: the alert store and destination fakes (tests/fakes/fixtures.py), and
one real Airflow per metadata DB (SQLite, PostgreSQL) that catches up on missed intervals while a
back-fill of older days runs, shared by the catch-up and back-fill tests (test_catchup.py,
test_backfill_reproducible.py): one stack and one wait for both, as a scheduler that comes back
while someone back-fills history would run them."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.conftest import require_service
from tests.fakes.fixtures import fakes, jira, pg_url, servicenow, store_url, webhook  # noqa: F401

MISSED = 3  # intervals the scheduler has to catch up on
BACKFILL_DAYS = 5  # days back-filled, before DETECTION_START_DATE
LAKE_DAYS = 10  # generated data: the LAKE_DAYS days before today (UTC)


@dataclass
class Scheduled:
    stack: object  # bench.airflow_stack.AirflowStack
    kind: str  # sqlite | postgresql
    lake: Path
    today: date
    start: date  # DETECTION_START_DATE
    store_url: str  # the alert store the DAG writes to
    tickets: Path  # the `file` destination's folder
    catchup: list[dict]  # the scheduled runs, once finished
    backfill_days: tuple[date, date]  # first and last logical date back-filled
    backfill: list[dict]  # the back-fill's runs, once finished


def _store_schema(database_url: str) -> str:
    """A schema for the alert store in the stack's own PostgreSQL database; its URL."""
    import psycopg

    url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute('CREATE SCHEMA "detections"')
    return f"{url}?options=-csearch_path%3Ddetections"


@pytest.fixture(
    scope="session",
    params=["sqlite", "postgresql"],
    ids=["sqlite metadata DB", "postgresql metadata DB"],
)
def scheduled(request, tmp_path_factory):
    """A scheduler that was "down" for MISSED days: the DAG starts MISSED days ago
    (DETECTION_START_DATE), so when the scheduler starts, MISSED intervals are due; meanwhile
    BACKFILL_DAYS older days (before the start date) are back-filled. The lake is generated demo
    data for the LAKE_DAYS days up to today 00:00 UTC (every window of both). Waits for both to
    finish before the tests look at them."""
    from bench.airflow_stack import AirflowStack, StackTimeout, postgres_database
    from detection_tools import lakegen as demo

    kind = request.param
    today = datetime.now(timezone.utc).date()
    start = today - timedelta(days=MISSED)
    home = tmp_path_factory.mktemp(f"scheduled-{kind}")
    lake = demo.write_lake(
        demo.generate(today - timedelta(days=LAKE_DAYS), LAKE_DAYS, activity_per_day=1000),
        home / "lake",
    )
    env = {"DETECTION_START_DATE": start.isoformat()}
    with contextlib.ExitStack() as cleanup:
        metadata = None
        store = str(home / "detection" / "alerts.db")
        if kind == "postgresql":
            require_service("PostgreSQL", "127.0.0.1", 5432)
            metadata = cleanup.enter_context(postgres_database())
            store = env["DETECTION_ALERT_STORE"] = _store_schema(metadata)
        stack = cleanup.enter_context(AirflowStack(home, lake, extra_env=env, metadata_db=metadata))
        first = today - timedelta(days=LAKE_DAYS - 1)  # its window starts on the lake's day 1
        last = first + timedelta(days=BACKFILL_DAYS - 1)
        stack.backfill(first.isoformat(), last.isoformat(), max_active_runs=BACKFILL_DAYS)

        def caught_up():
            runs = stack.runs("scheduled")
            done = len(runs) >= MISSED and all(r["state"] in ("success", "failed") for r in runs)
            return runs if done else None

        try:
            runs = stack.wait("the scheduler to catch up", caught_up, 600)
            stack.wait_for_backfill(600)
        except StackTimeout as exc:
            tasks = {r["run_id"]: stack.task_instances(r["run_id"]) for r in stack.runs()}
            pytest.fail(f"{exc}\nruns: {stack.runs()}\ntasks: {tasks}")
        yield Scheduled(
            stack,
            kind,
            lake,
            today,
            start,
            store,
            home / "detection" / "tickets",
            runs,
            (first, last),
            stack.runs("backfill"),
        )
