"""Issue #10's pushdown through the Log Analytics query API (bench/remote.py): the lake's window
served by the fake workspace; checks that only each side's first-where rows and the profile
cross the wire, with and without a splitting cap, and that the result equals the folder's.
The figure is the whole process (loading the fake included) and its peak RSS; the wire
figures and the PASS/FAIL checks are in the report."""

from __future__ import annotations

import json
import sys

from .. import harness
from .. import lake as lakes
from .base import Child, Suite


class RemotePushdown(Suite):
    name = "remote"
    params = [["M"]]
    # one scale, as bench.remote's default: --scale leaves it (--set remote.scale=S)
    follows_scale = False
    param_names = ["scale"]
    repeat = 1  # one pass is the check; at M it takes ~2 min and ~12 GB

    def setup(self, scale):
        spec = lakes.LakeSpec(rows_per_day=self.ctx.rows(scale))
        lakes.ensure_lake(self.ctx.data_dir, spec, workers=self.ctx.workers, log=self.ctx.log)
        self.dir = self.work(f"{scale}-remote")

    def _remote(self, scale):
        out = self.dir / f"remote-{self.i}.json"
        cmd = [sys.executable, "-m", "bench.remote", "--scale", str(self.ctx.rows(scale))]
        cmd += ["--data", str(self.ctx.data_dir), "--out", str(out)]

        def figures(run):
            return {"remote": json.loads(out.read_text())} if out.exists() else {}

        env = harness.child_env(code=self.ctx.code)
        return Child([cmd], env, harness.REPO, self.dir / f"remote-{self.i}.log", after=figures)

    def time_process(self, scale):
        return self._remote(scale)

    def peakmem_process(self, scale):
        return self._remote(scale)

    def report(self, report, runs, summary, scale):
        run = runs["process"][-1]
        remote = run.get("remote") or {"error": "bench.remote failed", "log": run["log"]}
        report["remote"] = {**remote, "scale": scale, "process": summary["process"]}

    @staticmethod
    def format(report: dict) -> list[str]:
        r = report.get("remote")
        if not r:
            return []
        if "runs" not in r:
            return [f"remote pushdown: {r['error']} (see {r['log']})"]
        from .. import remote

        p = r["process"]
        return [
            f"Log Analytics pushdown at {r['scale']} (process wall {p['wall_s']:.2f}s, peak RSS "
            f"{p['peak_rss_mib']:,.0f} MiB):",
            remote.table_text(r),
        ]
