"""A real Airflow for one test or measurement: API server, scheduler (LocalExecutor, workers forked
from a forkserver that preloads include.detection.preload) and DAG processor as separate
processes, each in its own process group, on a SQLite metadata DB in a temp folder.

    with AirflowStack(home, source) as stack:
        stack.backfill("2026-10-30", "2026-10-31")
        runs = stack.wait_for_runs(2)
        stack.task_instances(runs[0]["run_id"])
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DAG_ID = "runcommand_ueba_breach"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
COMPONENTS = ("api-server", "scheduler", "dag-processor")
# The API server reads task logs from the local files on one host: no log server (it would listen
# on every interface, port 8793).
ARGS = {"scheduler": ["--skip-serve-logs"]}
# What `make airflow` sets: the task modules (pandas, pyarrow, DuckDB, GE) and the parts of the
# task runner and the UI plugin (FastAPI) each task process would otherwise import before running
# a line of ours.
PRELOAD = (
    "include.detection.preload,airflow.sdk.execution_time.task_runner,airflow.dag_processing.dagbag,"
    "airflow.plugins_manager,fastapi.responses,airflow.api_fastapi.core_api.security"
)


class StackTimeout(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AirflowStack:
    def __init__(self, home: Path, source: Path, extra_env: dict | None = None):
        self.home = Path(home)
        port = self.port = _free_port()
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "AIRFLOW_HOME": str(self.home / "airflow"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home}/airflow/airflow.db",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "DETECTION_HOME": str(self.home / "detection"),
            "DETECTION_SOURCE": str(source),
            **(extra_env or {}),
        }
        for var in ("DETECTION_STAGING", "DETECTION_ALERT_STORE", "DETECTION_TICKET_DIR",
                    "DETECTION_DESTINATIONS"):
            self.env.pop(var, None)
        # what `make airflow` sets (include/detection/preload.py)
        self.env["AIRFLOW__SCHEDULER__MP_START_METHOD"] = "forkserver"
        self.env["AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD"] = PRELOAD
        self.db = self.home / "airflow" / "airflow.db"
        self.logs = [self.home / f"{c}.log" for c in COMPONENTS]
        self.procs: list[subprocess.Popen] = []

    # --- life cycle -------------------------------------------------------------------------------

    def __enter__(self) -> "AirflowStack":
        (self.home / "airflow").mkdir(parents=True, exist_ok=True)
        self.airflow("db", "migrate")
        for component, log in zip(COMPONENTS, self.logs):
            with open(log, "wb") as out:
                # own process group: Airflow's children outlive a plain SIGTERM to the parent
                self.procs.append(subprocess.Popen([AIRFLOW, component, *ARGS.get(component, [])],
                                                   env=self.env, stdout=out,
                                                   stderr=subprocess.STDOUT, cwd=REPO,
                                                   start_new_session=True))
        try:
            self.wait("the DAG to be serialized",
                      lambda: self.query("SELECT 1 FROM serialized_dag WHERE dag_id = ?", (DAG_ID,)), 120)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        import psutil

        # Task processes run in process groups of their own (Airflow's supervisor): collect every
        # descendant first, so one stopped mid-run does not outlive the stack.
        family = []
        for p in self.procs:
            try:
                family += psutil.Process(p.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                pass
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
            try:  # idle LocalExecutor workers outlive the scheduler's SIGTERM: end the whole group
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for child in family:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        self.procs = []

    # --- helpers ----------------------------------------------------------------------------------

    def airflow(self, *args: str) -> str:
        return subprocess.run([AIRFLOW, *args], env=self.env, check=True, capture_output=True,
                              text=True, cwd=REPO).stdout

    def query(self, sql: str, args=()) -> list[tuple]:
        try:
            with sqlite3.connect(self.db, timeout=5) as con:
                return con.execute(sql, args).fetchall()
        except sqlite3.OperationalError:  # tables not created yet / locked by a writer
            return []

    def wait(self, what: str, predicate, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.5)
        raise StackTimeout(f"timed out after {timeout:.0f}s waiting for {what}\n{self.log_tails()}")

    def log_tails(self, lines: int = 25) -> str:
        return "\n".join(f"--- {p.name}\n" + "".join(p.read_text(errors="replace").splitlines(True)[-lines:])
                         for p in self.logs if p.exists())

    # --- runs -------------------------------------------------------------------------------------

    def backfill(self, from_date: str, to_date: str, max_active_runs: int | None = None) -> None:
        """Daily intervals whose logical dates (interval starts) are from_date..to_date."""
        self.airflow("backfill", "create", "--dag-id", DAG_ID, "--from-date", from_date,
                     "--to-date", to_date,
                     *(["--max-active-runs", str(max_active_runs)] if max_active_runs else []))

    def backfill_runs(self) -> list[dict]:
        keys = ("run_id", "state", "interval_start", "interval_end", "start_date", "end_date")
        rows = self.query("SELECT run_id, state, data_interval_start, data_interval_end, start_date, "
                          "end_date FROM dag_run WHERE run_type = 'backfill' ORDER BY data_interval_end")
        return [dict(zip(keys, r)) for r in rows]

    def wait_for_runs(self, count: int, timeout: float = 300) -> list[dict]:
        def finished():
            runs = self.backfill_runs()
            return runs if len(runs) == count and all(r["state"] in ("success", "failed") for r in runs) else None
        return self.wait(f"{count} back-fill run(s) to finish", finished, timeout)

    def task_instances(self, run_id: str) -> dict[str, dict]:
        rows = self.query("SELECT task_id, state, start_date, end_date, "
                          "(julianday(end_date) - julianday(start_date)) * 86400 "
                          "FROM task_instance WHERE run_id = ?", (run_id,))
        return {t: {"state": s, "start": a, "end": b, "seconds": round(d, 3) if d is not None else None}
                for t, s, a, b, d in rows}

    def task_logs(self, pattern: str) -> list[Path]:
        return sorted((self.home / "airflow" / "logs").rglob(pattern))
