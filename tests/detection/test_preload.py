"""include/detection/preload.py is imported by the forkserver that LocalExecutor workers are forked
from: it must load what the tasks import, and leave a process that is safe to fork."""

import subprocess
import sys

from tests.conftest import REPO

CHECK = """
import os, sys, threading
import include.detection.preload as preload
print(sorted(m for m in preload.MODULES if m in sys.modules))
print(threading.active_count(), os.environ.get("GX_ANALYTICS_ENABLED"))
"""


def test_preload_imports_the_task_modules_and_starts_no_python_thread():
    out = subprocess.run(
        [sys.executable, "-c", CHECK],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    ).stdout.splitlines()
    assert out[0] == str(sorted(["duckdb", "great_expectations", "pandas", "pyarrow"]))
    # a Python thread alive at fork time would be missing (its locks possibly held) in every task
    assert out[1] == "1 false"


def test_make_airflow_runs_the_scheduler_with_the_preloading_forkserver_the_tests_measure():
    from bench.airflow_stack import PRELOAD

    makefile = (REPO / "Makefile").read_text()
    assert "export AIRFLOW__SCHEDULER__MP_START_METHOD := forkserver" in makefile
    assert f"export AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD := {PRELOAD}" in makefile
    assert PRELOAD.split(",")[0] == "include.detection.preload"
