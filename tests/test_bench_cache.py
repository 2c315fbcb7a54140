"""The scan cache's bench figures (bench/cache.py) at a tiny scale: the daily run with the
previous day cached agrees with the DuckDB query, the back-fill's cached modes agree window by
window, and the report carries the cache's size against the lake's."""

from __future__ import annotations

import json

import pytest

from bench import cache as cached_bench
from bench import harness

pytestmark = pytest.mark.slow

TINY = 20_000


def test_daily_run_with_the_previous_day_cached(tmp_path):
    d = cached_bench.bench_daily_cached(
        "T", TINY, tmp_path / "data", tmp_path / "out", warm=False, log=lambda *a: None
    )
    assert d["comparison"]["agree"], json.dumps(d["comparison"], indent=2, default=str)
    assert d["comparison"]["rows_ours"] > 0
    for mode in ("ours_fill", "ours_cached", "duckdb"):
        run = d["runs"][mode][0]
        assert run["exit_code"] == 0 and d[mode]["wall_s"] > 0, run.get("log_tail")
    assert (d["window"]["end"], d["previous_run_end"]) == (
        "2026-10-30T00:00:00Z",
        "2026-10-29T00:00:00Z",
    )
    # the pieces of the lake's three days: small, but there
    assert 0 < d["cache"]["bytes_on_disk"] < d["lake"]["bytes_on_disk"]
    assert 0 < d["cache"]["share_of_lake"] < 1
    assert d["target"] is None  # T is no scale with a target
    lines = "\n".join(cached_bench.format_cached({"daily_cached": {"T": d}}))
    assert "previous day cached" in lines and "of the lake" in lines


def test_backfill_with_the_cache_agrees_window_by_window(tmp_path):
    b = harness.bench_backfill(
        tmp_path / "data",
        tmp_path / "out",
        rows_per_day=TINY,
        days=5,
        warm=False,
        log=lambda *a: None,
    )
    c = cached_bench.bench_backfill_cached(b, tmp_path / "out", log=lambda *a: None)
    assert c["comparison"]["agree"], json.dumps(c["comparison"], indent=2, default=str)
    for mode in cached_bench.CACHED_BACKFILL_MODES:
        run = c["runs"][mode][0]
        assert run["exit_code"] == 0 and c[mode]["wall_s"] > 0, run.get("log_tail")
        assert set(c["ratios"][mode]) == {"wall_s", "cpu_s", "peak_rss_mib"}
    assert c["runs"]["ours_separate_shared_cache"][0]["processes"] == 4
    assert 0 < c["cache"]["share_of_lake"] < 1
    b["cached"] = c
    assert "full cache" in harness.format_table({"scales": {}, "backfill": b})
