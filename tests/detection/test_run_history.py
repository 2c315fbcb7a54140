"""Run history in the alert store: the volume baseline for the data-quality gate."""

import pytest

from include.detection import pipeline
from include.detection.errors import DataQualityError
from include.detection.store import AlertStore
from tests.conftest import require_service

ENDS = [f"2026-10-{d:02d}T00:00:00+00:00" for d in range(20, 28)]


def exercise(store):
    for end, rows in zip(ENDS, [100, 110, 90, 0, 120, 100, 105]):
        store.record_run("r", "AzureActivity", end, rows, "failed" if rows == 0 else "passed")
    store.record_run("r", "AzureActivity", ENDS[6], 95, "passed")          # re-run replaces
    assert store.trailing_runs("r", "AzureActivity", ENDS[7], 3) == [95, 100, 120]
    assert store.trailing_runs("r", "AzureActivity", ENDS[4], 7) == [90, 110, 100], \
        "the failed (0-row) run is no baseline"
    assert store.trailing_runs("r", "BehaviorAnalytics", ENDS[7], 3) == []


def test_run_history_sqlite(tmp_path):
    with AlertStore(str(tmp_path / "a.db")) as store:
        exercise(store)


def test_run_history_postgres():
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import uuid

    import psycopg

    schema = f"hist_{uuid.uuid4().hex[:8]}"
    base = "postgresql://postgres@127.0.0.1:5432/test"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        with AlertStore(f"{base}?options=-csearch_path%3D{schema}") as store:
            exercise(store)
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_validate_stage_records_volume_and_warns_on_a_drop(tmp_path):
    from tests.detection.test_cli import NOISE, dense, write_jsonl
    from tests.factories import activity_row, ueba_row

    source = write_jsonl(tmp_path / "s", dense(lambda **k: activity_row(**NOISE, **k)),
                         dense(lambda **k: ueba_row(EventSource="Device logons", **k)))
    end = "2026-11-01T00:00:00Z"
    extracted = pipeline.extract_to_stage(source, "AzureActivity", "2026-10-30T00:00:00Z", end,
                                          tmp_path / "staging")
    with AlertStore(str(tmp_path / "a.db")) as store:
        for i, day in enumerate(("2026-10-29", "2026-10-30", "2026-10-31")):
            store.record_run(pipeline.load_rule().id, "AzureActivity", f"{day}T00:00:00+00:00",
                             1000 + i, "passed")
        checked = pipeline.validate_stage(extracted, store)
        assert checked["status"] == "warnings"
        assert [w["check"] for w in checked["warnings"]] == ["volume_drop"]
        assert "of the trailing runs' median" in checked["warnings"][0]["observed"]
        assert store.trailing_runs(pipeline.load_rule().id, "AzureActivity", "2026-11-02", 1) == [
            extracted["rows_in_window"]]


def test_validate_stage_records_a_failed_run(tmp_path):
    from tests.detection.test_cli import write_jsonl
    from tests.factories import run_command, ueba_row

    source = write_jsonl(tmp_path / "s", run_command(), [ueba_row()])
    (source / "AzureActivity.jsonl").write_text("")
    extracted = pipeline.extract_to_stage(source, "AzureActivity", "2026-10-30T00:00:00Z",
                                          "2026-11-01T00:00:00Z", tmp_path / "staging")
    with AlertStore(str(tmp_path / "a.db")) as store, pytest.raises(DataQualityError, match="not_empty"):
        pipeline.validate_stage(extracted, store)
    with AlertStore(str(tmp_path / "a.db")) as store:
        assert store.trailing_runs(pipeline.load_rule().id, "AzureActivity", "2026-11-02", 5) == []
