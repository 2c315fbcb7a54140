"""The alerts console's page time with N alerts in PostgreSQL (issue #11: under 300 ms a page),
through the API server's own app (bench/console.py, which fills a fresh database on
127.0.0.1:5432, times each page `pages_repeat` times after a warm-up and drops it). The
database fill is the CLI's own setup: only the page medians are the figure."""

from __future__ import annotations

import json
import sys

from .. import console, harness
from .base import Child, Suite


class ConsolePages(Suite):
    name = "console"
    params = [[100_000], [10]]
    param_names = ["alerts", "pages_repeat"]
    repeat = 1  # the CLI takes the median of `pages_repeat` per page itself

    def setup(self, alerts, pages_repeat):
        self.dir = self.work("console")

    def time_slowest_page(self, alerts, pages_repeat):
        """The slowest page's median (seconds); every page's is in the report."""
        out = self.dir / f"console-{self.i}.json"
        cmd = [sys.executable, "-m", "bench.console", "--alerts", str(alerts)]
        cmd += ["--repeat", str(pages_repeat), "--out", str(out)]

        def pages(run):
            if not out.exists():
                return {}
            figures = json.loads(out.read_text())
            worst = max(p["median_ms"] for p in figures["pages"].values())
            return {"slowest_page_s": round(worst / 1000, 4), "console": figures}

        env = harness.child_env()
        log = self.dir / f"console-{self.i}.log"
        return Child([cmd], env, console.REPO, log, after=pages, time="slowest_page_s")

    def report(self, report, runs, summary, alerts, pages_repeat):
        run = runs["slowest_page"][-1]
        report["console"] = {
            **(run.get("console") or {"error": "bench.console failed", "log": run["log"]}),
            "process": summary["slowest_page"],
        }

    @staticmethod
    def format(report: dict) -> list[str]:
        c = report.get("console")
        if not c:
            return []
        if "pages" not in c:
            return [f"console page time: {c['error']} (see {c['log']})"]
        worst = max(p["median_ms"] for p in c["pages"].values())
        lines = [
            f"Console page time, {c['alerts']:,} alerts in PostgreSQL, median of {c['repeat']} "
            f"(target < {c['target_ms']:.0f} ms):"
        ]
        for name, p in c["pages"].items():
            lines.append(
                f"    {name:34} {p['median_ms']:7.1f} ms (max {p['max_ms']:7.1f})  {p['matching']}"
            )
        lines.append(
            f"    slowest median {worst:.1f} ms: target {'met' if c['met'] else 'NOT met'}"
        )
        return lines
