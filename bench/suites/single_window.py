"""Our `detect` against the rule as one DuckDB SQL query over one daily window (issue #5):
each a cold process (no scan cache) over the lake's last two days, page cache warm."""

from __future__ import annotations

from .. import harness
from .. import lake as lakes
from .base import Suite


class SingleWindow(Suite):
    name = "single_window"
    params = [["S", "M", "L"], [lakes.UNCOMMON_SHARE]]
    param_names = ["scale", "share"]  # share: Azure AD sign-ins UEBA flags uncommon

    def setup(self, scale, share):
        self.rows = self.ctx.rows(scale)
        self.spec, self.path, self.manifest, self.warmed = self.lake(self.rows, share)
        self.key = scale if share == lakes.UNCOMMON_SHARE else scale + harness.FLAGGED
        self.dir = self.work(self.key)

    def _run(self, engine):
        out = self.dir / f"{engine}-{self.i}.parquet"
        return self.detect(engine, self.path, self.manifest["end"], out)

    def time_ours(self, scale, share):
        return self._run("ours")

    def peakmem_ours(self, scale, share):
        return self._run("ours")

    def time_duckdb(self, scale, share):
        return self._run("duckdb")

    def peakmem_duckdb(self, scale, share):
        return self._run("duckdb")

    def report(self, report, runs, summary, scale, share):
        """harness.bench_scale's entry: `report["scales"][<scale>]`."""
        ok = all(runs[e][0]["exit_code"] == 0 for e in harness.ENGINES)
        comparison = (
            harness.compare(self.dir / "ours-0.parquet", self.dir / "duckdb-0.parquet")
            if ok
            else {"agree": False, "error": "an engine failed; see runs"}
        )
        ours, duckdb = summary["ours"], summary["duckdb"]
        ratios = {
            "wall": round(ours["wall_s"] / duckdb["wall_s"], 2),
            "cpu": round(ours["cpu_s"] / duckdb["cpu_s"], 2),
            "peak_rss": round(ours["peak_rss_mib"] / duckdb["peak_rss_mib"], 2),
        }
        end = self.manifest["end"]
        size = lakes.disk_usage(self.path)
        report["scales"][self.key] = {
            "scale": self.key,
            "rows_per_day": self.rows,
            "ueba_rows_per_day": self.spec.ueba_rows_per_day,
            "uncommon_share": share,
            "days": self.spec.days,
            "window": {"start": harness._minus_days(end, 2), "end": end},
            "lake": {
                "path": str(self.path),
                "bytes_on_disk": size,
                "gib_on_disk": round(size / 2**30, 3),
                "rows": self.manifest["rows"],
                "generation_seconds": self.manifest["generation_seconds"],
                "generated_now": self.manifest["generated"],
                "page_cache_warmed": self.warmed["warmed"],
                "rule_column_bytes": self.warmed["bytes"],
                "compression": self.spec.compression,
                "row_group_rows": self.spec.row_group_rows,
            },
            "ours": ours,
            "duckdb": duckdb,
            "ratios": ratios,
            "targets": {
                k: {"max": v, "ratio": ratios[k], "met": ratios[k] <= v}
                for k, v in harness.TARGETS.get(scale, {}).items()
            },
            "comparison": comparison,
            "runs": runs,
        }
