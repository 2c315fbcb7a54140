"""Run history in the alert store: the volume baseline and the hourly rhythm of the
data-quality gate, on SQLite and PostgreSQL (tests/fakes/fixtures.py store_url)."""

import pytest

from include.detection import pipeline
from include.detection.errors import DataQualityError
from include.detection.store import AlertStore

ENDS = [f"2026-10-{d:02d}T00:00:00+00:00" for d in range(20, 28)]


def test_run_history(store_url):
    with AlertStore(store_url) as store:
        for end, rows in zip(ENDS, [100, 110, 90, 0, 120, 100, 105]):
            store.record_run("r", "AzureActivity", end, rows, "failed" if rows == 0 else "passed")
        store.record_run("r", "AzureActivity", ENDS[6], 95, "passed")  # re-run replaces
        assert store.trailing_runs("r", "AzureActivity", ENDS[7], 3) == [95, 100, 120]
        assert store.trailing_runs("r", "AzureActivity", ENDS[4], 7) == [90, 110, 100], (
            "the failed (0-row) run is no baseline"
        )
        assert store.trailing_runs("r", "BehaviorAnalytics", ENDS[7], 3) == []


def test_run_profiles(store_url):
    with AlertStore(store_url) as store:
        for i, end in enumerate(ENDS[:5]):
            store.record_profile(
                "r",
                "BehaviorAnalytics",
                end,
                {"2026-10-19T08": i, "2026-10-19T09": 0},
                "2026-10-19T08:59:00+00:00",
                "failed" if i == 3 else "passed",
            )
        store.record_profile(
            "r", "BehaviorAnalytics", ENDS[4], {"2026-10-19T08": 7}, None, "warnings"
        )  # re-run replaces
        got = store.trailing_profiles("r", "BehaviorAnalytics", ENDS[5], 3)
        assert [(p["window_end"], p["hourly"], p["status"]) for p in got] == [
            (ENDS[4], {"2026-10-19T08": 7}, "warnings"),
            (ENDS[2], {"2026-10-19T08": 2, "2026-10-19T09": 0}, "passed"),
            (ENDS[1], {"2026-10-19T08": 1, "2026-10-19T09": 0}, "passed"),
        ], "newest first, the failed run left out"
        assert got[1]["newest"] == "2026-10-19T08:59:00+00:00" and got[0]["newest"] is None
        assert store.trailing_profiles("r", "BehaviorAnalytics", ENDS[0], 3) == []
        assert store.trailing_profiles("r", "AzureActivity", ENDS[5], 3) == []


def test_validate_stage_records_volume_and_warns_on_a_drop(tmp_path):
    from tests.detection.test_cli import NOISE, dense, write_jsonl
    from tests.factories import activity_row, ueba_row

    source = write_jsonl(
        tmp_path / "s",
        dense(lambda **k: activity_row(**NOISE, **k)),
        dense(lambda **k: ueba_row(EventSource="Device logons", **k)),
    )
    end = "2026-11-01T00:00:00Z"
    extracted = pipeline.extract_to_stage(
        source, "AzureActivity", "2026-10-30T00:00:00Z", end, tmp_path / "staging"
    )
    with AlertStore(str(tmp_path / "a.db")) as store:
        for i, day in enumerate(("2026-10-29", "2026-10-30", "2026-10-31")):
            store.record_run(
                pipeline.load_rule().id,
                "AzureActivity",
                f"{day}T00:00:00+00:00",
                1000 + i,
                "passed",
            )
        checked = pipeline.validate_stage(extracted, store)
        assert checked["status"] == "warnings"
        assert [w["check"] for w in checked["warnings"]] == ["volume_drop"]
        assert "of the trailing runs' median" in checked["warnings"][0]["observed"]
        assert store.trailing_runs(pipeline.load_rule().id, "AzureActivity", "2026-11-02", 1) == [
            extracted["rows_in_window"]
        ]


def test_validate_stage_records_a_failed_run(tmp_path):
    from tests.detection.test_cli import write_jsonl
    from tests.factories import run_command, ueba_row

    source = write_jsonl(tmp_path / "s", run_command(), [ueba_row()])
    (source / "AzureActivity.jsonl").write_text("")
    extracted = pipeline.extract_to_stage(
        source,
        "AzureActivity",
        "2026-10-30T00:00:00Z",
        "2026-11-01T00:00:00Z",
        tmp_path / "staging",
    )
    with (
        AlertStore(str(tmp_path / "a.db")) as store,
        pytest.raises(DataQualityError, match="not_empty"),
    ):
        pipeline.validate_stage(extracted, store)
    with AlertStore(str(tmp_path / "a.db")) as store:
        assert store.trailing_runs(pipeline.load_rule().id, "AzureActivity", "2026-11-02", 5) == []


def test_validate_stage_records_the_hourly_profile_and_reads_it_back(tmp_path):
    from tests.detection.test_cli import NOISE, dense, write_jsonl
    from tests.factories import activity_row, ueba_row

    source = write_jsonl(
        tmp_path / "s",
        dense(lambda **k: activity_row(**NOISE, **k)),
        dense(lambda **k: ueba_row(EventSource="Device logons", **k)),
    )
    start, end = "2026-10-30T00:00:00+00:00", "2026-11-01T00:00:00+00:00"
    rule = pipeline.load_rule()
    with AlertStore(str(tmp_path / "a.db")) as store:
        extracted = pipeline.extract_to_stage(
            source, "AzureActivity", start, end, tmp_path / "staging", store=store
        )
        pipeline.validate_stage(extracted, store)
        [saved] = store.trailing_profiles(rule.id, "AzureActivity", "2026-11-02", 5)
        assert saved["window_end"] == end and saved["status"] == "passed"
        assert len(saved["hourly"]) == 48
        assert sum(saved["hourly"].values()) == extracted["rows_in_window"]
        assert pipeline._history(store, rule, "AzureActivity", "2026-11-02")["profiles"] == [saved]
