"""The DAG's work in one process, without Airflow: what a daily run costs end to end.

    python -m bench.dag --source LAKE --end TS --work DIR [--timings steps.json] [--warm]

Runs the library calls each task of `dags/runcommand_ueba_breach.py` makes, in task order:
extract both tables to staged Parquet, validate each staged table (Great Expectations), correlate
from the staged files and write result.parquet, build alerts and UPSERT them into a fresh SQLite
store, deliver them to a ticket folder (the `file` destination); then the Data Docs task, which
in the DAG runs beside correlate/build/deliver (timed separately: it is not on the alerts' path).
State lives under DIR. Each step's wall and CPU seconds and the process's RSS after it (and peak
so far) go to --timings as JSON.

Cold (default) is `airflow dags test`: one process that imports everything it needs, GE included.
--warm first imports `include.detection.preload`, off the clock, as a LocalExecutor worker does
when the scheduler runs with `mp_forkserver_preload = include.detection.preload`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path


def _rss_mib() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


class Steps:
    """Times each step: wall and CPU seconds, current and peak RSS."""

    def __init__(self, quiet: bool = False):
        self.steps: dict[str, dict] = {}
        self.t0 = time.perf_counter()
        self.quiet = quiet

    def run(self, name: str, fn, *args, **kwargs):
        u0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        value = fn(*args, **kwargs)
        u1 = resource.getrusage(resource.RUSAGE_SELF)
        self.steps[name] = {
            "seconds": round(time.perf_counter() - t0, 3),
            "cpu_seconds": round(u1.ru_utime + u1.ru_stime - u0.ru_utime - u0.ru_stime, 3),
            "rss_mib": round(_rss_mib(), 1),
            "peak_rss_mib": round(u1.ru_maxrss / 1024, 1),
        }
        if not self.quiet:
            print(
                f"{name:34} {self.steps[name]['seconds']:8.2f}s"
                f"  rss {self.steps[name]['rss_mib']:8.0f} MiB",
                file=sys.stderr,
            )
        return value


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.dag",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--source", type=Path, required=True)
    p.add_argument("--end", required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--timings", type=Path, default=None)
    p.add_argument(
        "--warm",
        action="store_true",
        help="preload pandas/pyarrow/DuckDB/GE before the clock starts (a warm worker)",
    )
    a = p.parse_args(argv)

    work = a.work.resolve()
    os.environ.update(
        {
            "DETECTION_HOME": str(work),
            "DETECTION_SOURCE": str(a.source.resolve()),
            "DETECTION_STAGING": str(work / "staging"),
            "DETECTION_ALERT_STORE": str(work / "alerts.db"),
            "DETECTION_TICKET_DIR": str(work / "tickets"),
            "DETECTION_DESTINATIONS": "file",
        }
    )
    preload_s = None
    if a.warm:
        t_preload = time.perf_counter()
        import include.detection.preload  # noqa: F401

        preload_s = round(time.perf_counter() - t_preload, 3)
    steps = Steps()
    t_import = time.perf_counter()
    from include.detection import alerts, config, correlation, pipeline, results, store
    from include.detection.rule import load_rule

    steps.steps["import library"] = {
        "seconds": round(time.perf_counter() - t_import, 3),
        "rss_mib": round(_rss_mib(), 1),
    }

    rule = load_rule("runcommand_ueba_breach")
    start, end = pipeline.window(a.end, rule.query_period)

    def extract(table):
        return pipeline.extract_to_stage(
            config.source(), table, start.isoformat(), end.isoformat(), config.staging(), rule
        )

    def validate(extracted, s):
        return pipeline.validate_stage(extracted, s, rule)

    def correlate(activity, ueba):
        result = correlation.correlate(
            pipeline.load_stage(activity["path"]), pipeline.load_stage(ueba["path"])
        )
        out = Path(activity["path"]).with_name("result.parquet")
        results.write(result, out, correlation.OUTPUT_COLUMNS + correlation.CONTEXT_COLUMNS)
        return {"path": str(out), "results": len(result)}

    def build(correlated, activity, ueba, s):
        status = alerts.worst_quality(activity.get("status"), ueba.get("status"))
        built = alerts.build_alerts(results.load(correlated["path"]), rule, start, end, status)
        return {**s.upsert(built), "alerts": len(built)}

    def deliver(s):
        from include.detection import destinations

        return destinations.deliver_pending(s, config.destinations())

    def data_docs(s):
        return pipeline.render_docs(config.staging(), start, end, s, rule)

    extracted = {
        t: steps.run(f"extract {t}", extract, t) for t in ("AzureActivity", "BehaviorAnalytics")
    }
    ge_preloaded = "great_expectations" in sys.modules
    with store.open_store() as s:
        checked = {t: steps.run(f"validate {t}", validate, e, s) for t, e in extracted.items()}
    correlated = steps.run(
        "correlate", correlate, checked["AzureActivity"], checked["BehaviorAnalytics"]
    )
    with store.open_store() as s:
        stored = steps.run(
            "build_alerts + upsert",
            build,
            correlated,
            checked["AzureActivity"],
            checked["BehaviorAnalytics"],
            s,
        )
        delivered = steps.run("deliver", deliver, s)
        to_delivery = time.perf_counter() - steps.t0
        docs = steps.run("data_docs (beside the run)", data_docs, s)
    tickets = len(list((work / "tickets").glob("*.json")))
    report = {
        "steps": steps.steps,
        "results": correlated["results"],
        "alerts": stored,
        "deliveries": delivered,
        "tickets": tickets,
        "data_docs": docs,
        "warm": a.warm,
        "preload_seconds": preload_s,
        "ge_preloaded": ge_preloaded,
        "through_delivery_seconds": round(to_delivery, 3),
        "total_seconds": round(time.perf_counter() - steps.t0, 3),
    }
    if a.timings:
        a.timings.parent.mkdir(parents=True, exist_ok=True)
        a.timings.write_text(json.dumps(report, indent=2, default=str))
    print(f"results {correlated['results']}, alerts {stored}, tickets {tickets}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
