"""The CeleryExecutor deployment of docker-compose.yaml, as processes on loopback, for a test or a
measurement: `airflow db migrate`, then API server, scheduler, DAG processor, triggerer and two
`airflow celery worker`s (worker-a@, worker-b@), each in its own process group; Redis as broker,
PostgreSQL as metadata DB, Celery result backend and alert store (fresh databases, dropped at the
end). Every process gets deploy/celery.env (what compose gives every Airflow container) plus the
places of this run (`deployment_env`), the same variables compose sets per service.

    with CeleryStack(home, source) as stack:
        stack.backfill("2026-10-29", "2026-10-31", max_active_runs=1)
        runs = stack.wait_for_runs(3)
        stack.celery_tasks()   # task instance -> the Celery worker that ran it

`python -m bench.celery_stack` back-fills the demo lake with and without the worker preload and
prints the validate tasks' durations.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
from contextlib import closing
from pathlib import Path

from bench.airflow_stack import AIRFLOW, DAG_ID, REPO, AirflowStack, StackTimeout, _free_port

ENV_FILE = REPO / "deploy" / "celery.env"
POSTGRES = "postgresql://postgres@127.0.0.1:5432"  # trust auth on loopback (tests and CI)
REDIS = "redis://127.0.0.1:6379/7"  # a Redis DB for these stacks

# What each service of docker-compose.yaml runs (`airflow <args>`). No log servers: every process
# writes task logs to one shared folder (compose: the airflow-logs volume), which the API server
# reads; a worker's log server would listen on every interface (port 8793).
COMMANDS = {
    "airflow-init": ["db", "migrate"],
    "airflow-apiserver": ["api-server"],
    "airflow-scheduler": ["scheduler", "--skip-serve-logs"],
    "airflow-dag-processor": ["dag-processor"],
    "airflow-triggerer": ["triggerer", "--skip-serve-logs"],
    "airflow-worker": ["celery", "worker", "--skip-serve-logs"],
}
WORKERS = ("worker-a", "worker-b")

# Variables whose value names a place: each deployment has its own (compose: container paths and
# service names; here: temp folders and loopback ports), with the same URL scheme and driver.
PLACES = (
    "AIRFLOW_HOME",
    "PYTHONPATH",
    "AIRFLOW__CORE__DAGS_FOLDER",
    "AIRFLOW__CORE__PLUGINS_FOLDER",
    "AIRFLOW__LOGGING__BASE_LOG_FOLDER",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__API__HOST",
    "AIRFLOW__API__PORT",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT",
    "DETECTION_HOME",
    "DETECTION_SOURCE",
    "DETECTION_STAGING",
    "DETECTION_TICKET_DIR",
    "DETECTION_ALERT_STORE",
)
# Shared by every process, never in a file: the API server signs task logs' and sessions' tokens
# with SECRET_KEY, the scheduler signs each task's Execution API token with JWT_SECRET (64+ bytes:
# HS512), FERNET_KEY encrypts Connections (Jira / ServiceNow credentials) in the metadata DB.
SECRETS = ("AIRFLOW__API__SECRET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY")
# The site's choices: compose takes them from the environment (with a default).
SITE = ("DETECTION_DESTINATIONS", "DETECTION_START_DATE")
# Only the test sets these. DAGs unpaused at creation (a deployment unpauses on purpose); a task
# whose worker died is noticed after 30 s without a heartbeat instead of 5 min (retried in
# seconds by the task policy below instead of the DAG's 5 min); no scheduled catch-up runs beside
# the back-fills (DETECTION_START_DATE in the future; back-fills are not clipped to it). Each
# stack's broker keys (queues, unacked messages, worker control) carry a prefix of its own: two
# stacks on one machine (two people running the tests) never take each other's tasks or see
# each other's workers, and a stack deletes only its own keys. A task the killed worker had taken
# but not started stays `queued` (Celery acknowledged it; nothing heartbeats): the scheduler
# hands it back after 90 s instead of Airflow's 10 min (seen once in CI: validate_behavior_
# analytics received by the worker 30 ms before the SIGKILL, and the run waited past the test).
TEST_ONLY = {
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "90",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
    "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": "celery_stack_{suffix}:",
}
TEST_START_DATE = "2099-01-01"
# $AIRFLOW_HOME/config/airflow_local_settings.py of the test only: retries come seconds after the
# scheduler marks a task of a killed worker failed, not the DAG's 5 min with exponential backoff.
FAST_RETRIES = """\
from datetime import timedelta


def task_policy(task):
    task.retry_delay = timedelta(seconds=2)
    task.retry_exponential_backoff = 0
"""
EXECUTING = re.compile(r"\[([0-9a-f-]{36})\] Executing workload in Celery")


def shared_env() -> dict[str, str]:
    """deploy/celery.env, as compose reads it."""
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(ENV_FILE).items() if v is not None}


def preload_modules() -> list[str]:
    return json.loads(shared_env()["AIRFLOW__CELERY__EXTRA_CELERY_CONFIG"])["imports"]


def _libpq(url: str) -> str:
    """A SQLAlchemy URL as psycopg takes it."""
    return re.sub(r"^(db\+)?postgresql\+psycopg://", "postgresql://", url)


class CeleryStack(AirflowStack):
    def __init__(
        self,
        home: Path,
        source: Path,
        *,
        preload: bool = True,
        postgres: str = POSTGRES,
        redis: str = REDIS,
        extra_env: dict | None = None,
    ):
        super().__init__(home, source)
        self.source = Path(source)
        suffix = self.suffix = uuid.uuid4().hex[:10]
        self.databases = {
            "airflow": f"celery_stack_{suffix}_airflow",
            "detections": f"celery_stack_{suffix}_detections",
        }
        self.postgres, self.redis = postgres.rstrip("/"), redis
        self.hostname = _airflow_hostname()  # a task instance's hostname: the worker's
        self.health_port = _free_port()
        self.deployment_env = self._deployment_env()
        if not preload:  # measuring what the preload saves: the same settings without it
            self.deployment_env["AIRFLOW__CELERY__EXTRA_CELERY_CONFIG"] = "{}"
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW_", "AIRFLOW__", "DETECTION_"))
        }
        self.env.update(
            {
                **self.deployment_env,
                **{k: v.format(suffix=suffix) for k, v in TEST_ONLY.items()},
                "DETECTION_START_DATE": TEST_START_DATE,
                **(extra_env or {}),
            }
        )
        self.metadata_libpq = _libpq(self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
        self.commands = {
            f"airflow-{name}" if name in WORKERS else service: [
                *args,
                *(["--celery-hostname", f"{name}@%h"] if name in WORKERS else []),
            ]
            for service, args in COMMANDS.items()
            if service != "airflow-init"
            for name in (WORKERS if service == "airflow-worker" else (service,))
        }
        self.logs = [self.home / f"{name}.log" for name in self.commands]
        self.procs_by_name: dict[str, subprocess.Popen] = {}
        self.timeline: dict[str, float] = {}  # seconds from __enter__ to each step

    def _deployment_env(self) -> dict[str, str]:
        api = f"http://127.0.0.1:{self.port}"
        pg = self.postgres.replace("postgresql://", "postgresql+psycopg://", 1)
        meta = f"{pg}/{self.databases['airflow']}"
        airflow_home = self.home / "airflow"
        data = self.home / "detection"
        return {
            **shared_env(),
            "AIRFLOW_HOME": str(airflow_home),
            "PYTHONPATH": str(REPO),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(airflow_home / "logs"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta,
            # Airflow's async engine (API server, triggerer): psycopg 3 is async too; without this
            # Airflow derives postgresql+asyncpg, which is not installed
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": meta,
            "AIRFLOW__CELERY__BROKER_URL": self.redis,
            # task states in the metadata DB (celery_taskmeta), through the same psycopg 3 driver
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{meta}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(self.health_port),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
            "AIRFLOW__CORE__FERNET_KEY": _fernet_key(),
            "DETECTION_HOME": str(data),
            "DETECTION_SOURCE": str(self.source),
            "DETECTION_STAGING": str(data / "staging"),
            "DETECTION_TICKET_DIR": str(data / "tickets"),
            "DETECTION_ALERT_STORE": f"{self.postgres}/{self.databases['detections']}",
            "DETECTION_DESTINATIONS": "file",
            "DETECTION_START_DATE": "2026-10-27",
        }

    # --- life cycle -------------------------------------------------------------------------------

    def __enter__(self) -> "CeleryStack":
        import psycopg
        from psycopg import sql  # names quoted by psycopg, not by hand

        self._t0 = time.monotonic()
        try:
            with closing(psycopg.connect(f"{self.postgres}/postgres", autocommit=True)) as con:
                for db in self.databases.values():
                    con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
            config = self.home / "airflow" / "config"
            config.mkdir(parents=True, exist_ok=True)
            (config / "airflow_local_settings.py").write_text(FAST_RETRIES)
            self.airflow(*COMMANDS["airflow-init"])
            self.mark("migrated")
            for name, args in self.commands.items():
                with open(self.home / f"{name}.log", "wb") as out:
                    # own process group: Airflow's children outlive a plain SIGTERM to the parent
                    proc = subprocess.Popen(
                        [AIRFLOW, *args],
                        env=self.env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        cwd=REPO,
                        start_new_session=True,
                    )
                self.procs.append(proc)
                self.procs_by_name[name] = proc
            self.wait("the DAG to be serialized and both workers ready", self._ready, 180)
            self.mark("ready")
        except BaseException:
            self.stop()
            raise
        return self

    def mark(self, step: str) -> None:
        self.timeline[step] = round(time.monotonic() - self._t0, 1)

    def _ready(self) -> bool:
        for name, proc in self.procs_by_name.items():
            if proc.poll() is not None:
                raise StackTimeout(f"{name} exited with {proc.returncode}\n{self.log_tails()}")
        jobs = {j for (j,) in self.query("SELECT job_type FROM job WHERE state = 'running'")}
        return (
            bool(self.query("SELECT 1 FROM serialized_dag WHERE dag_id = %s", (DAG_ID,)))
            and jobs >= {"SchedulerJob", "DagProcessorJob", "TriggererJob"}
            and all(" ready." in self.worker_log(w) for w in WORKERS)
            and self._api_healthy()
        )

    def _api_healthy(self) -> bool:
        import requests

        try:
            return requests.get(f"http://127.0.0.1:{self.port}/api/v2/monitor/health", timeout=5).ok
        except requests.RequestException:
            return False

    def stop(self, grace: float = 5) -> None:
        """SIGTERM to every process group, SIGKILL to what is left after `grace` seconds in all
        (a warm Celery shutdown would wait for running tasks), then drop the databases."""
        import psutil
        import psycopg
        from psycopg import sql  # names quoted by psycopg, not by hand

        family = []
        for p in self.procs:
            try:
                family += psutil.Process(p.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                pass
        for p in self.procs:
            _killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _killpg(p.pid, signal.SIGKILL)
            p.wait()
        for child in family:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        self.procs = []
        try:
            with closing(psycopg.connect(f"{self.postgres}/postgres", autocommit=True)) as con:
                for db in self.databases.values():
                    con.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(db)
                        )
                    )
        finally:
            self._forget_broker_keys()

    def _forget_broker_keys(self) -> None:
        import redis

        prefix = self.env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX"]
        client = redis.Redis.from_url(self.redis)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)

    def kill_worker(self, name: str) -> None:
        """A worker host lost: SIGKILL the worker, its pool and the task processes it supervises
        (each task process has a process group of its own)."""
        import psutil

        proc = self.procs_by_name[f"airflow-{name}"]
        family = psutil.Process(proc.pid).children(recursive=True)
        _killpg(proc.pid, signal.SIGKILL)
        for child in family:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        proc.wait(timeout=10)

    # --- helpers ----------------------------------------------------------------------------------

    def airflow(self, *args: str) -> str:
        done = subprocess.run(
            [AIRFLOW, *args], env=self.env, capture_output=True, text=True, cwd=REPO
        )
        if done.returncode:
            raise RuntimeError(
                f"airflow {' '.join(args)} exited with {done.returncode}:\n{done.stderr[-3000:]}"
            )
        return done.stdout

    def backfill(
        self, from_date: str, to_date: str, max_active_runs: int | None = None, *options: str
    ) -> None:
        """Daily intervals whose logical dates (interval starts) are from_date..to_date, once the
        scheduler has closed the previous back-fill (Airflow runs one at a time per DAG)."""
        self.wait(
            "the previous back-fill to be closed",
            lambda: not self.query("SELECT id FROM backfill WHERE completed_at IS NULL"),
            120,
        )
        self.airflow(
            "backfill",
            "create",
            "--dag-id",
            DAG_ID,
            "--from-date",
            from_date,
            "--to-date",
            to_date,
            *(["--max-active-runs", str(max_active_runs)] if max_active_runs else []),
            *options,
        )

    def query(self, sql: str, args=()) -> list[tuple]:
        import psycopg

        try:
            with closing(psycopg.connect(self.metadata_libpq, connect_timeout=5)) as con:
                rows = con.execute(sql.replace("?", "%s"), args).fetchall()
        except (psycopg.errors.UndefinedTable, psycopg.OperationalError):
            return []  # tables not created yet
        # timestamps as SQLite's text, as AirflowStack's callers read them
        return [tuple(v.isoformat(" ") if hasattr(v, "isoformat") else v for v in r) for r in rows]

    def worker_log(self, name: str) -> str:
        path = self.home / f"airflow-{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def task_instances(self, run_id: str) -> dict[str, dict]:
        rows = self.query(
            "SELECT task_id, state, start_date, end_date, "
            "EXTRACT(EPOCH FROM end_date - start_date), hostname, queue, "
            "external_executor_id, try_number "
            "FROM task_instance WHERE run_id = %s",
            (run_id,),
        )
        return {
            t: {
                "state": s,
                "start": a,
                "end": b,
                "seconds": float(d) if d is not None else None,
                "hostname": h,
                "queue": q,
                "celery_task_id": c,
                "try_number": n,
            }
            for t, s, a, b, d, h, q, c, n in rows
        }

    def celery_tasks(self) -> dict[str, str]:
        """Celery task id -> the worker whose log says it executed that workload."""
        return {task: w for w in WORKERS for task in EXECUTING.findall(self.worker_log(w))}

    def running_on(self, run_id: str, prefixes: tuple[str, ...] = ("",)) -> tuple[str, str] | None:
        """(task id, worker) of a task of the run (whose id starts with one of `prefixes`)
        running now, if any."""
        ran = self.celery_tasks()
        for task_id, celery_id in self.query(
            "SELECT task_id, external_executor_id FROM task_instance "
            "WHERE run_id = %s AND state = 'running'",
            (run_id,),
        ):
            if celery_id in ran and task_id.startswith(prefixes):
                return task_id, ran[celery_id]
        return None

    def task_logs(self, pattern: str) -> list[Path]:
        return sorted(Path(self.env["AIRFLOW__LOGGING__BASE_LOG_FOLDER"]).rglob(pattern))


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _airflow_hostname() -> str:
    from airflow.utils.net import get_hostname

    return get_hostname()


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


# --- measurement: validate task durations with and without the preload --------------------------


def measure(days: tuple[str, str] = ("2026-10-29", "2026-10-31")) -> dict:
    """Back-fill `days` on a stack with the worker preload and on one without; the validate
    tasks' and the runs' durations (the stacks' folders are kept, for their logs)."""
    import tempfile

    from detection_tools import lakegen as demo

    tmp = Path(tempfile.mkdtemp(prefix="celery-stack-"))
    out = {"folder": str(tmp)}
    lake = demo.ensure_demo_lake(tmp / "lake")
    for preload in (True, False):
        with CeleryStack(tmp / f"preload-{preload}", lake, preload=preload) as stack:
            stack.backfill(*days, max_active_runs=1)
            runs = stack.wait_for_runs(3, timeout=900)
            tis = [stack.task_instances(r["run_id"]) for r in runs]
            out[f"preload={preload}"] = {
                "runs": [r["state"] for r in runs],
                "not succeeded": [
                    (k, t[k]["state"]) for t in tis for k in t if t[k]["state"] != "success"
                ],
                "validate_s": sorted(
                    round(t[k]["seconds"], 2)
                    for t in tis
                    for k in t
                    if k.startswith("validate_") and t[k]["seconds"]
                ),
                "run_s": [round(_seconds(r), 1) for r in runs],
            }
    return out


def _seconds(run: dict) -> float:
    from datetime import datetime

    return (
        datetime.fromisoformat(run["end_date"]) - datetime.fromisoformat(run["start_date"])
    ).total_seconds()


if __name__ == "__main__":
    print(json.dumps(measure(), indent=2))
    sys.exit(0)
