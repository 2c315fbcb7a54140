"""A real Airflow run of the DAG at one scale: `python -m bench --airflow` (see airflow_stack.py).

The scheduler (LocalExecutor, preloading forkserver) first runs the DAG's latest interval on its
own (that warms the workers up: the forkserver imports GE when it starts the first one), then
back-fills every complete 2-day window of the lake (two for the 3-day lakes), each a first attempt
as a daily run is (a re-run's task start-up costs Airflow more; medians reported). Reported:
each task's duration from the metadata DB, the alerts' critical path (slower extract + slower
validate + correlate + build_alerts + deliver: the tasks' own time, Airflow's per-task start-up
included), the time from the run's start to the end of deliver (the scheduler's hand-offs between
tasks included) and the whole run (data_docs included).
"""

from __future__ import annotations

import shutil
import statistics
from datetime import datetime, timedelta
from pathlib import Path

from .airflow_stack import AirflowStack

CRITICAL_PATH = (
    ("extract_azure_activity", "extract_behavior_analytics"),
    ("validate_azure_activity", "validate_behavior_analytics"),
    ("correlate",),
    ("build_alerts",),
    ("deliver",),
)


def _measure(run: dict, tasks: dict) -> dict:
    path = sum(max(tasks[t]["seconds"] or 0 for t in group) for group in CRITICAL_PATH)

    def since_start(ts: str) -> float:
        return round(
            (
                datetime.fromisoformat(ts) - datetime.fromisoformat(run["start_date"])
            ).total_seconds(),
            3,
        )

    # the alerts are out when deliver ends; data_docs may still be rendering beside it
    return {
        "run_id": run["run_id"],
        "state": run["state"],
        "interval": [run["interval_start"], run["interval_end"]],
        "tasks": tasks,
        "critical_path_s": round(path, 3),
        "run_to_delivery_s": since_start(tasks["deliver"]["end"]),
        "run_wall_s": since_start(run["end_date"]),
    }


def bench_airflow(
    name: str,
    rows_per_day: int,
    data_dir: Path,
    out_dir: Path,
    compression: str = "zstd",
    workers: int = 1,
    log=print,
) -> dict:
    from . import lake as lakes

    lake, manifest = lakes.ensure_lake(
        data_dir,
        lakes.LakeSpec(rows_per_day=rows_per_day, compression=compression),
        workers=workers,
        log=log,
    )
    end, days = datetime.fromisoformat(manifest["end"]), manifest["spec"]["days"]
    home = out_dir / "runs" / f"{name}-airflow"
    shutil.rmtree(home, ignore_errors=True)
    with AirflowStack(home, lake) as stack:
        # The DAG is unpaused at start, so the scheduler first runs the latest interval (no data
        # there: it fails at validate); that run forks the preloaded workers, i.e. it is the
        # warm-up.
        stack.wait(
            "the scheduled warm-up run",
            lambda: stack.query(
                "SELECT state FROM dag_run WHERE run_type = 'scheduled' "
                "AND state IN ('success', 'failed')"
            ),
            600,
        )
        # Then every complete 2-day window of the lake, in order, each a first attempt as a daily
        # run is. (logical date = interval start; the window is the 2 days before the interval's
        # end)
        stack.backfill(
            (end - timedelta(days=days - 1)).date().isoformat(),
            (end - timedelta(days=1)).date().isoformat(),
            max_active_runs=1,
        )
        runs = stack.wait_for_runs(days - 1, timeout=900)
        measured = [_measure(run, stack.task_instances(run["run_id"])) for run in runs]
    med = {
        k: round(statistics.median(m[k] for m in measured), 3)
        for k in ("critical_path_s", "run_to_delivery_s", "run_wall_s")
    }
    report = {
        "scale": name,
        "rows_per_day": rows_per_day,
        "runs": measured,
        "repeat": len(measured),
        "state": "success" if all(m["state"] == "success" for m in measured) else "failed",
        "home": str(home),
        **med,
        "tasks": measured[len(measured) // 2]["tasks"],
    }
    log(
        f"  {name} airflow: {report['state']}  median of {len(measured)}: "
        f"critical path {med['critical_path_s']:.2f}s"
        f"  run start to delivered {med['run_to_delivery_s']:.2f}s"
        f"  whole run {med['run_wall_s']:.2f}s"
    )
    return report
