"""The daily run with the previous day cached (issue #13; the measurement is bench/cache.py's):
each repeat starts from an empty cache folder that the previous day's run fills (`fill`), then
`detect --end E` reads the new day and serves the day before from the cache, against the DuckDB
query over the same window."""

from __future__ import annotations

import shutil
from datetime import timedelta

from .. import cache, harness
from .. import lake as lakes
from .base import Suite


class DailyCached(Suite):
    name = "daily_cached"
    params = [["S", "M", "L"]]
    param_names = ["scale"]

    def setup(self, scale):
        self.rows = self.ctx.rows(scale)
        self.spec, self.path, _, self.warmed = self.lake(self.rows, lakes.UNCOMMON_SHARE)
        self.end = cache._label(self.spec.end)
        self.previous = cache._label(self.spec.end - timedelta(days=1))
        self.dir = self.work(f"{scale}-daily-cached")

    def _cache(self):
        return self.dir / f"cache-{self.i}"

    def time_ours_fill(self, scale):
        """The previous day's run, into an empty cache (its own figure, as make bench's)."""
        folder = self._cache()
        out = self.dir / f"fill-{self.i}.parquet"
        child = self.detect("ours", self.path, self.previous, out, cache=folder)
        child.before = lambda: shutil.rmtree(folder, ignore_errors=True)
        return child

    def time_ours_cached(self, scale):
        out = self.dir / f"ours_cached-{self.i}.parquet"
        return self.detect("ours", self.path, self.end, out, cache=self._cache())

    def peakmem_ours_cached(self, scale):
        return self.time_ours_cached(scale)

    def time_duckdb(self, scale):
        return self.detect("duckdb", self.path, self.end, self.dir / f"duckdb-{self.i}.parquet")

    def peakmem_duckdb(self, scale):
        return self.time_duckdb(scale)

    def order(self, i):
        # the fill first; then who goes first alternates
        pair = ["ours_cached", "duckdb"]
        return ["ours_fill"] + (pair if i % 2 == 0 else pair[::-1])

    def report(self, report, runs, summary, scale):
        """cache.bench_daily_cached's entry: `report["daily_cached"][<scale>]`."""
        ok = all(runs[m][0]["exit_code"] == 0 for m in ("ours_cached", "duckdb"))
        comparison = (
            harness.compare(self.dir / "ours_cached-0.parquet", self.dir / "duckdb-0.parquet")
            if ok
            else {"agree": False, "error": "a run failed; see runs"}
        )
        lake_bytes = lakes.disk_usage(self.path)
        cache_bytes = lakes.disk_usage(self._cache())  # the last repeat's, as make bench's
        ratios = {
            k: round(summary["ours_cached"][k] / summary["duckdb"][k], 2)
            for k in ("wall_s", "cpu_s", "peak_rss_mib")
        }
        target = cache.DAILY_TARGETS.get(scale)
        report.setdefault("daily_cached", {})[scale] = {
            "scale": scale,
            "rows_per_day": self.rows,
            "uncommon_share": self.spec.uncommon_share,
            "window": {"start": cache._label(self.spec.end - timedelta(days=2)), "end": self.end},
            "previous_run_end": self.previous,
            "lake": {
                "path": str(self.path),
                "bytes_on_disk": lake_bytes,
                "page_cache_warmed": self.warmed["warmed"],
            },
            "cache": {
                "bytes_on_disk": cache_bytes,
                "share_of_lake": round(cache_bytes / lake_bytes, 5) if lake_bytes else None,
                "days_cached": 3,
            },
            **summary,
            "ratios": ratios,
            "target": None
            if target is None
            else {"max": target, "ratio": ratios["wall_s"], "met": ratios["wall_s"] <= target},
            "comparison": comparison,
            "runs": runs,
        }
