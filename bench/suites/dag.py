"""The DAG's tasks in one process at a scale (bench/dag.py, issue #5): `cold`, importing
everything as `airflow dags test` does, and `warm`, with the worker's preload done, as a
LocalExecutor worker with forkserver preload. `to_delivery` is what the alerts wait for (first
task to the end of delivery, timed in the process); the target is within 3x of `detect` alone
at the same scale (the single_window suite's figure, when it ran)."""

from __future__ import annotations

import json
import shutil
import statistics
import sys

from .. import harness
from .. import lake as lakes
from .base import Child, Suite


class Dag(Suite):
    name = "dag"
    params = [["M"], ["cold", "warm"]]
    # one scale, as make bench's --dag-scale: --scale leaves it (--set dag.scale=S)
    follows_scale = False
    param_names = ["scale", "mode"]

    def setup(self, scale, mode):
        self.rows = self.ctx.rows(scale)
        # the DAG reads the lake as it comes: no page cache warming, as make bench
        spec = lakes.LakeSpec(rows_per_day=self.rows, compression=self.ctx.compression)
        self.path, self.manifest = lakes.ensure_lake(
            self.ctx.data_dir, spec, workers=self.ctx.workers, log=self.ctx.log
        )
        self.dir = self.work(f"{scale}-dag-{mode}")

    def _dag(self, mode, time="wall_s"):
        work = self.dir / str(self.i)
        timings = work / "steps.json"
        cmd = [
            sys.executable,
            "-m",
            "bench.dag",
            "--source",
            str(self.path),
            "--end",
            self.manifest["end"],
            "--work",
            str(work / "state"),
            "--timings",
            str(timings),
            *(["--warm"] if mode == "warm" else []),
        ]

        def fresh():
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)

        def steps(run):
            if not timings.exists():
                return {}
            s = json.loads(timings.read_text())
            return {
                "to_delivery_s": round(s["through_delivery_seconds"], 3),
                "data_docs_s": s["steps"]["data_docs (beside the run)"]["seconds"],
                "steps": s,
            }

        env = harness.child_env(harness.NO_CACHE, code=self.ctx.code)
        return Child([cmd], env, self.ctx.code, work / "dag.log", fresh, steps, time)

    def time_to_delivery(self, scale, mode):
        return self._dag(mode, time="to_delivery_s")

    def time_process(self, scale, mode):
        return self._dag(mode)

    def peakmem_process(self, scale, mode):
        return self._dag(mode)

    def report(self, report, runs, summary, scale, mode):
        """harness.run_bench's `report["dag"][<mode>]`, with the ratio to `detect`."""
        done = [r for r in runs["process"] if "to_delivery_s" in r]
        d = {
            "scale": scale,
            "rows_per_day": self.rows,
            "mode": mode,
            **summary["process"],
            "exit_code": max((r["exit_code"] for r in runs["process"]), key=abs),
            "steps": done[-1]["steps"] if done else None,
            "runs": [{k: v for k, v in r.items() if k != "steps"} for r in runs["process"]],
        }
        if done:
            d["to_delivery_s"] = summary["to_delivery"]["to_delivery_s"]
            d["data_docs_s"] = statistics.median(r["data_docs_s"] for r in done)
        detect = report["scales"].get(scale, {}).get("ours")
        if detect and d.get("to_delivery_s"):
            d["vs_detect"] = {
                "to_delivery": round(d["to_delivery_s"] / detect["wall_s"], 2),
                "wall": round(d["wall_s"] / detect["wall_s"], 2),
                "peak_rss": round(d["peak_rss_mib"] / detect["peak_rss_mib"], 2),
            }
            d["target"] = {
                "max": harness.DAG_TARGET,
                "met": d["vs_detect"]["to_delivery"] <= harness.DAG_TARGET,
            }
        report["dag"] = {**(report.get("dag") or {}), mode: d}
