"""Back-fill through the real scheduler, as users run history: API server, scheduler (LocalExecutor,
workers forked from a forkserver that preloads include.detection.preload) and DAG processor as
separate processes, a SQLite metadata DB, the demo lake. `airflow backfill create` over two days
whose 2-day windows overlap must give each alert once and one ticket per alert, and the validate
tasks must find Great Expectations already imported."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from include.detection import demo
from tests.conftest import REPO

pytestmark = pytest.mark.slow
DAG_ID = "runcommand_ueba_breach"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, predicate, timeout: float, logs: list[Path]):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    tails = "\n".join(f"--- {p.name}\n" + "".join(p.read_text(errors="replace").splitlines(True)[-25:])
                      for p in logs if p.exists())
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{tails}")


def _query(db: Path, sql: str, args=()) -> list[tuple]:
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return con.execute(sql, args).fetchall()
    except sqlite3.OperationalError:  # tables not created yet / locked by a writer
        return []


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-stack")
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow/airflow.db",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        # what `make airflow` and the README set: task processes inherit GE instead of importing it
        "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
        "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD": "include.detection.preload",
        "DETECTION_HOME": str(home / "detection"),
        "DETECTION_SOURCE": str(demo.ensure_demo_lake(home / "lake")),
    }
    for var in ("DETECTION_STAGING", "DETECTION_ALERT_STORE", "DETECTION_TICKET_DIR",
                "DETECTION_DESTINATIONS"):
        env.pop(var, None)
    (home / "airflow").mkdir()
    subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, capture_output=True, cwd=REPO)
    procs, logs = [], []
    for component in ("api-server", "scheduler", "dag-processor"):
        log = home / f"{component}.log"
        logs.append(log)
        with open(log, "wb") as out:
            # own process group: Airflow's children outlive a plain SIGTERM to the parent
            procs.append(subprocess.Popen([AIRFLOW, component], env=env, stdout=out,
                                          stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True))
    db = home / "airflow" / "airflow.db"
    try:
        _wait("the DAG to be serialized", lambda: _query(
            db, "SELECT 1 FROM serialized_dag WHERE dag_id = ?", (DAG_ID,)), 120, logs)
        yield {"env": env, "db": db, "home": home, "logs": logs}
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
            try:  # idle LocalExecutor workers outlive the scheduler's SIGTERM: end the whole group
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def backfill(stack):
    """Two daily intervals, ending 2026-10-31 and 2026-11-01 (logical dates 10-30 and 10-31)."""
    subprocess.run([AIRFLOW, "backfill", "create", "--dag-id", DAG_ID, "--from-date", "2026-10-30",
                    "--to-date", "2026-10-31"], env=stack["env"], check=True, capture_output=True,
                   cwd=REPO)

    def finished():
        runs = _query(stack["db"], "SELECT run_id, state, data_interval_start, data_interval_end "
                                   "FROM dag_run WHERE run_type = 'backfill' ORDER BY data_interval_end")
        return runs if len(runs) == 2 and all(r[1] in ("success", "failed") for r in runs) else None

    return _wait("both back-fill runs to finish", finished, 300, stack["logs"])


def test_backfill_runs_every_interval_to_success(backfill, stack):
    assert [(r[1], r[2][:10], r[3][:10]) for r in backfill] == [
        ("success", "2026-10-30", "2026-10-31"), ("success", "2026-10-31", "2026-11-01")], \
        _query(stack["db"], "SELECT run_id, task_id, state FROM task_instance ORDER BY run_id, task_id")


def test_overlapping_backfill_windows_give_each_alert_and_ticket_once(backfill, stack):
    out = subprocess.run([sys.executable, "-m", "include.detection", "alerts", "list"], env=stack["env"],
                         check=True, capture_output=True, text=True, cwd=REPO).stdout
    alerts = [json.loads(line) for line in out.splitlines() if line.strip()]
    ids = [a["id"] for a in alerts]
    # the demo's ground truth over both intervals: 5 Run Command executions to alert on
    expected = {c["name"] for c in demo.planted_cases() if c["expected_alert"]
                and "2026-10-29" <= str(c["run_start"])[:10] < "2026-11-01"}
    assert len(ids) == len(set(ids)) == len(expected) == 5
    tickets = list((stack["home"] / "detection" / "tickets").glob("*.json"))
    assert sorted(t.stem for t in tickets) == sorted(ids)


def test_validate_tasks_find_great_expectations_preloaded_by_the_worker(backfill, stack):
    logs = list((stack["home"] / "airflow" / "logs").rglob("task_id=validate_*/attempt=*.log"))
    assert len(logs) >= 4  # two tables x two intervals
    for log in logs:
        assert "Great Expectations preloaded by the worker: True" in log.read_text(), log
