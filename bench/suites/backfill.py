"""A back-fill (issue #13): every daily 2-day window of a `days`-day lake, our `detect --from
--to` in one process against the DuckDB query looped over the windows in one process, and one
process per window of each; then our three ways with the scan cache (an empty one, a full one,
one cache shared by the per-window processes). Results compared window by window against the
looped DuckDB query."""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import timedelta
from pathlib import Path

from .. import cache, harness
from .. import lake as lakes
from .base import Child, Suite


class Backfill(Suite):
    name = "backfill"
    params = [
        [harness.BACKFILL["rows_per_day"]],
        [harness.BACKFILL["days"]],
        [lakes.HIGH_UNCOMMON_SHARE],
    ]
    param_names = ["rows_per_day", "days", "share"]

    def setup(self, rows_per_day, days, share):
        self.spec, self.path, self.manifest, self.warmed = self.lake(rows_per_day, share, days)
        ends = [self.spec.end - timedelta(days=d) for d in range(days - 2, -1, -1)]
        self.labels = [cache._label(e) for e in ends]
        self.dir = self.work("backfill")
        self.cached_dir = self.work("backfill-cached")

    def _range(self, mode, folder: Path, cache_folder=None):
        engine = mode.split("_")[0]
        cmd = harness.range_command(
            engine, self.path, self.labels[0], self.labels[-1], folder / f"{mode}-{self.i}.parquet"
        )
        return self.engine(cmd, engine, cache_folder)

    def _separate(self, mode, folder: Path, cache_folder=None):
        engine = mode.split("_")[0]
        cmds = [
            harness.engine_command(
                engine, self.path, label, folder / f"{mode}-{self.i}-{k:02d}.parquet"
            )
            for k, label in enumerate(self.labels)
        ]
        one = self.engine(cmds[0], engine, cache_folder)
        return Child(cmds, one.env, one.cwd, folder / f"{mode}-{self.i}.log")

    def _cache(self):
        return self.cached_dir / f"cache-{self.i}"

    def _empty_cache(self):
        shutil.rmtree(self._cache(), ignore_errors=True)

    # --- without the scan cache (cold scans) ----------------------------------------------------

    def time_ours_range(self, *p):
        return self._range("ours_range", self.dir)

    def peakmem_ours_range(self, *p):
        return self.time_ours_range()

    def time_duckdb_loop(self, *p):
        return self._range("duckdb_loop", self.dir)

    def peakmem_duckdb_loop(self, *p):
        return self.time_duckdb_loop()

    def time_ours_separate(self, *p):
        return self._separate("ours_separate", self.dir)

    def time_duckdb_separate(self, *p):
        return self._separate("duckdb_separate", self.dir)

    # --- with the scan cache --------------------------------------------------------------------

    def time_ours_range_cold_cache(self, *p):
        child = self._range("ours_range_cold_cache", self.cached_dir, self._cache())
        child.before = self._empty_cache
        return child

    def time_ours_range_warm_cache(self, *p):
        """Right after the cold-cache run, over the cache it filled."""
        child = self._range("ours_range_warm_cache", self.cached_dir, self._cache())
        child.after = lambda run: {"cache_bytes": lakes.disk_usage(self._cache())}
        return child

    def time_ours_separate_shared_cache(self, *p):
        child = self._separate("ours_separate_shared_cache", self.cached_dir, self._cache())
        child.before = self._empty_cache
        return child

    def order(self, i):
        plain = list(harness.BACKFILL_MODES)
        cached = list(cache.CACHED_BACKFILL_MODES)
        return (plain if i % 2 == 0 else plain[::-1]) + cached

    def report(self, report, runs, summary, rows_per_day, days, share):
        """harness.bench_backfill's entry, `report["backfill"]`, with cache.
        bench_backfill_cached's under its "cached"."""
        plain = harness.BACKFILL_MODES
        comparison = (
            harness._compare_backfill(self.dir, self.labels)
            if all(runs[m][0]["exit_code"] == 0 for m in plain)
            else {"agree": False, "error": "a run failed; see runs"}
        )

        def ratios(mode, peer):
            return {
                k: round(summary[mode][k] / summary[peer][k], 2)
                for k in ("wall_s", "cpu_s", "peak_rss_mib")
            }

        wall = ratios("ours_range", "duckdb_loop")["wall_s"]
        b = {
            "rows_per_day": rows_per_day,
            "days": days,
            "windows": len(self.labels),
            "uncommon_share": share,
            "first_end": self.labels[0],
            "last_end": self.labels[-1],
            "lake": {
                "path": str(self.path),
                "gib_on_disk": round(lakes.disk_usage(self.path) / 2**30, 3),
                "rows": self.manifest["rows"],
                "page_cache_warmed": self.warmed["warmed"],
            },
            **{m: summary[m] for m in plain},
            "ratios": {
                "range_vs_loop": ratios("ours_range", "duckdb_loop"),
                "separate_vs_separate": ratios("ours_separate", "duckdb_separate"),
            },
            "target": {
                "max": harness.BACKFILL_TARGET["wall"],
                "ratio": wall,
                "met": wall <= harness.BACKFILL_TARGET["wall"],
            },
            "comparison": comparison,
            "runs": {m: runs[m] for m in plain},
        }
        b["cached"] = self._cached_report(runs, summary, ratios)
        report["backfill"] = b

    def _cached_report(self, runs, summary, ratios):
        modes = cache.CACHED_BACKFILL_MODES
        loop = harness.rows_by_window(self.dir / "duckdb_loop-0.parquet")
        comparison = {}
        if all(runs[m][0]["exit_code"] == 0 for m in modes):
            for mode in ("ours_range_cold_cache", "ours_range_warm_cache"):
                comparison[mode] = harness.compare_windows(
                    harness.rows_by_window(self.cached_dir / f"{mode}-0.parquet"), loop
                )
            each = {
                label: Counter(
                    harness.normalized_rows(
                        self.cached_dir / f"ours_separate_shared_cache-0-{k:02d}.parquet"
                    )
                )
                for k, label in enumerate(self.labels)
            }
            comparison["ours_separate_shared_cache"] = harness.compare_windows(
                {k: v for k, v in each.items() if v}, loop
            )
            comparison["agree"] = all(v["agree"] for v in comparison.values())
        else:
            comparison = {"agree": False, "error": "a run failed; see runs"}
        lake_bytes = lakes.disk_usage(self.path)
        cache_bytes = runs["ours_range_warm_cache"][-1].get("cache_bytes", 0)
        cold = ratios("ours_range_cold_cache", "duckdb_loop")
        return {
            **{m: summary[m] for m in modes},
            "ratios": {
                m: ratios(m, "duckdb_separate" if "separate" in m else "duckdb_loop") for m in modes
            },
            "target": {
                "max": cache.BACKFILL_CACHED_TARGET,
                "ratio": cold["wall_s"],
                "met": cold["wall_s"] <= cache.BACKFILL_CACHED_TARGET,
            },
            "cache": {
                "bytes_on_disk": cache_bytes,
                "share_of_lake": round(cache_bytes / lake_bytes, 5) if lake_bytes else None,
            },
            "comparison": comparison,
            "runs": {m: runs[m] for m in modes},
        }
