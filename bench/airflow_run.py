"""A real Airflow run of the DAG at one scale: `python -m bench --airflow` (see airflow_stack.py).

The scheduler (LocalExecutor, preloading forkserver) back-fills two daily intervals of the lake;
the first warms the workers up (the forkserver imports GE when it starts the first worker), the
second is measured. Reported: each task's duration from the metadata DB, the alerts' critical
path (slower extract + slower validate + correlate + build_alerts + deliver: the tasks' own time,
Airflow's per-task start-up included), the time from the run's start to the end of deliver
(the scheduler's hand-offs between tasks included) and the whole run (data_docs included).
"""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

from .airflow_stack import AirflowStack

CRITICAL_PATH = (("extract_azure_activity", "extract_behavior_analytics"),
                 ("validate_azure_activity", "validate_behavior_analytics"),
                 ("correlate",), ("build_alerts",), ("deliver",))


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def bench_airflow(name: str, rows_per_day: int, data_dir: Path, out_dir: Path, compression: str = "zstd",
                  workers: int = 1, log=print) -> dict:
    from . import lake as lakes

    lake, manifest = lakes.ensure_lake(data_dir, lakes.LakeSpec(rows_per_day=rows_per_day,
                                                                compression=compression),
                                       workers=workers, log=log)
    end = _ts(manifest["end"])
    home = out_dir / "runs" / f"{name}-airflow"
    shutil.rmtree(home, ignore_errors=True)
    with AirflowStack(home, lake) as stack:
        stack.backfill((end - timedelta(days=2)).date().isoformat(),
                       (end - timedelta(days=1)).date().isoformat(), max_active_runs=1)
        runs = stack.wait_for_runs(2, timeout=900)
        measured = runs[-1]
        tasks = stack.task_instances(measured["run_id"])
    path = sum(max(tasks[t]["seconds"] or 0 for t in group) for group in CRITICAL_PATH)
    wall = (_ts(measured["end_date"]) - _ts(measured["start_date"])).total_seconds()
    # the alerts are out when deliver ends; data_docs may still be rendering beside it
    to_delivery = (_ts(tasks["deliver"]["end"]) - _ts(measured["start_date"])).total_seconds()
    report = {"scale": name, "rows_per_day": rows_per_day, "state": measured["state"],
              "interval": [measured["interval_start"], measured["interval_end"]],
              "tasks": tasks, "critical_path_s": round(path, 3), "run_wall_s": round(wall, 3),
              "run_to_delivery_s": round(to_delivery, 3),
              "warmup_state": runs[0]["state"], "home": str(home)}
    log(f"  {name} airflow: {measured['state']}  critical path {path:.2f}s  run start to delivered "
        f"{to_delivery:.2f}s  whole run {wall:.2f}s")
    return report
