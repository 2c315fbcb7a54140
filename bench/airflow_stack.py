"""A real Airflow for one test or measurement: API server, scheduler (LocalExecutor, workers forked
from a forkserver that preloads include.detection.preload) and DAG processor as separate
processes, each in its own process group, on a SQLite metadata DB in a temp folder or on a
PostgreSQL database (`metadata_db=`, e.g. one made by `postgres_database()`).

    with AirflowStack(home, source) as stack:
        stack.backfill("2026-10-30", "2026-10-31")
        runs = stack.wait_for_runs(2)
        stack.task_instances(runs[0]["run_id"])

The DAG catches up from DETECTION_START_DATE. Unless `extra_env` sets it, the stack sets it to
yesterday (UTC): the scheduler then runs the latest interval only, and every other run is one
the caller asked for (a back-fill is not limited by the start date).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from datetime import date, datetime, timedelta, timezone
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


@contextlib.contextmanager
def postgres_database(server: str = "postgresql://postgres@127.0.0.1:5432/postgres"):
    """A fresh, empty PostgreSQL database for one stack, dropped afterwards (with whatever
    connections are left). Yields its SQLAlchemy URL (psycopg 3, for the sync and async engines;
    asyncpg is not needed)."""
    import psycopg
    from psycopg import sql  # names quoted by psycopg, not by hand

    name = f"airflow_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = server.rsplit("/", 1)[0]
    try:
        yield f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AirflowStack:
    def __init__(
        self,
        home: Path,
        source: Path,
        extra_env: dict | None = None,
        metadata_db: str | None = None,
    ):
        """`metadata_db`: a SQLAlchemy URL (PostgreSQL: `postgresql+psycopg://...`); default a
        SQLite file under `home`."""
        self.home = Path(home)
        port = self.port = _free_port()
        self.metadata_db = metadata_db
        sql = metadata_db or f"sqlite:///{self.home}/airflow/airflow.db"
        inherited = {
            k: v
            for k, v in os.environ.items()
            if k
            not in (
                "DETECTION_START_DATE",
                "DETECTION_RUN_DEADLINE",
                "DETECTION_COMPLETENESS_TIMEOUT",
                "DETECTION_COMPLETENESS_RETRY_DELAY",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC",
            )
        }
        yesterday = (datetime.now(timezone.utc).date() - timedelta(days=1)).isoformat()
        self.env = {
            **inherited,
            "PYTHONPATH": str(REPO),
            "AIRFLOW_HOME": str(self.home / "airflow"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql,
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
            "DETECTION_START_DATE": yesterday,
            **(extra_env or {}),
        }
        if metadata_db:  # the API server's async engine (psycopg 3 does both)
            self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = metadata_db
        for var in (
            "DETECTION_STAGING",
            "DETECTION_ALERT_STORE",
            "DETECTION_TICKET_DIR",
            "DETECTION_DESTINATIONS",
        ):  # the stack's own, under `home`, unless given
            if var not in (extra_env or {}):
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
                self.procs.append(
                    subprocess.Popen(
                        [AIRFLOW, component, *ARGS.get(component, [])],
                        env=self.env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        cwd=REPO,
                        start_new_session=True,
                    )
                )
        try:
            self.wait(
                "the DAG to be serialized",
                lambda: self.query("SELECT 1 FROM serialized_dag WHERE dag_id = ?", (DAG_ID,)),
                120,
            )
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
        done = subprocess.run(
            [AIRFLOW, *args], env=self.env, capture_output=True, text=True, cwd=REPO
        )
        if done.returncode:
            raise RuntimeError(
                f"airflow {' '.join(args)}: exit {done.returncode}\n"
                + "".join((done.stdout + done.stderr).splitlines(True)[-30:])
            )
        return done.stdout

    def query(self, sql: str, args=()) -> list[tuple]:
        """Rows of a query on the metadata DB (`?` placeholders); datetimes as ISO text (as
        SQLite stores them) whichever the DB."""
        if self.metadata_db:
            return self._query_postgres(sql, args)
        try:
            with sqlite3.connect(self.db, timeout=5) as con:
                return con.execute(sql, args).fetchall()
        except sqlite3.OperationalError:  # tables not created yet / locked by a writer
            return []

    def _query_postgres(self, sql: str, args) -> list[tuple]:
        import psycopg

        url = self.metadata_db.replace("postgresql+psycopg://", "postgresql://", 1)
        try:
            with psycopg.connect(url, connect_timeout=5) as con:
                rows = con.execute(sql.replace("?", "%s"), args).fetchall()
        except psycopg.errors.UndefinedTable:  # not migrated yet
            return []
        return [
            tuple(v.isoformat(sep=" ") if isinstance(v, (datetime, date)) else v for v in r)
            for r in rows
        ]

    def wait(self, what: str, predicate, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.5)
        raise StackTimeout(f"timed out after {timeout:.0f}s waiting for {what}\n{self.log_tails()}")

    def log_tails(self, lines: int = 25) -> str:
        return "\n".join(
            f"--- {p.name}\n" + "".join(p.read_text(errors="replace").splitlines(True)[-lines:])
            for p in self.logs
            if p.exists()
        )

    # --- runs -------------------------------------------------------------------------------------

    def backfill(
        self,
        from_date: str,
        to_date: str,
        max_active_runs: int | None = None,
        reprocess_behavior: str | None = None,
    ) -> None:
        """Daily intervals whose logical dates (interval starts) are from_date..to_date.
        `reprocess_behavior`: none (default), failed or completed (runs that exist re-run)."""
        args = [
            "backfill",
            "create",
            "--dag-id",
            DAG_ID,
            "--from-date",
            from_date,
            "--to-date",
            to_date,
            *(["--max-active-runs", str(max_active_runs)] if max_active_runs else []),
            *(["--reprocess-behavior", reprocess_behavior] if reprocess_behavior else []),
        ]
        for attempt in range(12):
            try:
                self.airflow(*args)
                return
            except RuntimeError as exc:
                # SQLite takes one writer: the CLI's transaction (one, so nothing half-made) can
                # lose to the scheduler's. And the scheduler closes a finished back-fill on its
                # own clock (every ~30 s): a new one before that is refused as already running.
                retry = "database is locked" in str(exc) or "AlreadyRunningBackfill" in str(exc)
                if not retry or attempt == 11:
                    raise
                time.sleep(min(2 + 2 * attempt, 10))

    def wait_for_backfill(self, timeout: float = 300) -> int:
        """Wait until the latest back-fill is complete (every run of it finished); its id."""

        def done():
            rows = self.query("SELECT id, completed_at FROM backfill ORDER BY id DESC LIMIT 1")
            return rows[0][0] if rows and rows[0][1] is not None else None

        return self.wait("the back-fill to complete", done, timeout)

    def runs(self, run_type: str | None = None) -> list[dict]:
        """DAG runs (optionally of one type: scheduled, backfill, manual), by interval."""
        keys = (
            "run_id",
            "run_type",
            "state",
            "interval_start",
            "interval_end",
            "start_date",
            "end_date",
            "queued_at",
        )
        rows = self.query(
            "SELECT run_id, run_type, state, data_interval_start, data_interval_end, start_date, "
            "end_date, queued_at FROM dag_run"
            + (" WHERE run_type = ?" if run_type else "")
            + " ORDER BY data_interval_end",
            (run_type,) if run_type else (),
        )
        return [dict(zip(keys, r)) for r in rows]

    def backfill_runs(self) -> list[dict]:
        keys = ("run_id", "state", "interval_start", "interval_end", "start_date", "end_date")
        rows = self.query(
            "SELECT run_id, state, data_interval_start, data_interval_end, start_date, "
            "end_date FROM dag_run WHERE run_type = 'backfill' ORDER BY data_interval_end"
        )
        return [dict(zip(keys, r)) for r in rows]

    def wait_for_runs(self, count: int, timeout: float = 300) -> list[dict]:
        def finished():
            runs = self.backfill_runs()
            return (
                runs
                if len(runs) == count and all(r["state"] in ("success", "failed") for r in runs)
                else None
            )

        return self.wait(f"{count} back-fill run(s) to finish", finished, timeout)

    def task_instances(self, run_id: str) -> dict[str, dict]:
        rows = self.query(
            "SELECT task_id, state, start_date, end_date FROM task_instance WHERE run_id = ?",
            (run_id,),
        )
        return {
            t: {"state": s, "start": a, "end": b, "seconds": _seconds(a, b)} for t, s, a, b in rows
        }

    def task_logs(self, pattern: str) -> list[Path]:
        return sorted((self.home / "airflow" / "logs").rglob(pattern))


def _seconds(start: str | None, end: str | None) -> float | None:
    if not (start and end):
        return None
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 3)
