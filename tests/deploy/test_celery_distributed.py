"""The CeleryExecutor deployment of docker-compose.yaml, run for real on loopback
(bench/celery_stack.py): API server, scheduler, DAG processor, triggerer and two Celery workers
as separate processes; Redis as broker; PostgreSQL as metadata DB, Celery result backend and
alert store. A back-fill of three days must run every task on a Celery worker, on both workers,
give the alerts and tickets the embedded default gives, and add nothing when re-run; a worker
killed while one of its tasks runs must not stop the next back-fill nor duplicate anything."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from bench.celery_stack import WORKERS, CeleryStack, StackTimeout
from detection_tools import lakegen as demo
from include.detection import store
from tests.conftest import REPO, require_service

pytestmark = [pytest.mark.slow, pytest.mark.services]

FIRST = ("2026-10-29", "2026-10-31")  # logical dates: windows ending 10-30, 10-31 and 11-01
KILLED = "2026-11-01"  # the window ending 11-02: the cross-midnight case, new
# The task_instance columns that say where and how a try ran.
WHERE = "task_id, try_number, state, hostname, queue, external_executor_id"


def _alerts(url: str) -> list[dict]:
    """The store's alerts, without the times they were stored and delivered at."""
    with store.open_store(url) as s:
        alerts = s.alerts(["file"])
    for alert in alerts:
        alert.pop("first_seen"), alert.pop("last_seen")
        for ticket in alert["tickets"]:
            ticket.pop("delivered_at")
    return sorted(alerts, key=lambda a: a["id"])


def _deliveries(url: str) -> list[tuple]:
    with store.open_store(url) as s:
        return sorted(
            (d["alert_id"], d["destination"], d["revision"], d["action"]) for d in s.delivery_log()
        )


def _tickets(folder) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


class Embedded:
    """The same windows through `python -m include.detection run` (no Airflow), in order, on a
    home of its own (SQLite store, file tickets): what the embedded default gives."""

    def __init__(self, home, lake):
        self.home, self.lake = home, lake

    def run(self, *ends: str) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DETECTION_")}
        env["DETECTION_HOME"] = str(self.home)
        for end in ends:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "include.detection",
                    "run",
                    "--source",
                    str(self.lake),
                    "--end",
                    end,
                ],
                env=env,
                check=True,
                capture_output=True,
                cwd=REPO,
            )
        return {
            "alerts": _alerts(str(self.home / "alerts.db")),
            "deliveries": _deliveries(str(self.home / "alerts.db")),
            "tickets": _tickets(self.home / "tickets"),
        }


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    return demo.ensure_demo_lake(tmp_path_factory.mktemp("celery-lake") / "lake")


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, lake):
    return Embedded(tmp_path_factory.mktemp("embedded") / "home", lake)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, lake):
    require_service("PostgreSQL", "127.0.0.1", 5432)
    require_service("Redis", "127.0.0.1", 6379)
    with CeleryStack(tmp_path_factory.mktemp("celery-stack"), lake) as stack:
        yield stack
        # where the wall time went (seconds from the start), for whoever tunes this test
        (stack.home / "timeline.json").write_text(json.dumps(stack.timeline))


def _state(stack: CeleryStack) -> dict:
    url = stack.env["DETECTION_ALERT_STORE"]
    return {
        "alerts": _alerts(url),
        "deliveries": _deliveries(url),
        "tickets": _tickets(stack.home / "detection" / "tickets"),
    }


def _wait(stack: CeleryStack, count: int) -> list[dict]:
    try:
        return stack.wait_for_runs(count, timeout=420)
    except StackTimeout as exc:
        states = stack.query(f"SELECT run_id, {WHERE} FROM task_instance ORDER BY run_id")
        pytest.fail(f"{exc}\ntask instances: {states}")


def start_healthchecks(stack: CeleryStack) -> dict:
    """Each Airflow service's healthcheck from docker-compose.yaml, started against the process
    the stack runs for it (the test's host names and ports in place of the containers'); they
    run beside the first back-fill (~5 s of CPU each)."""
    compose = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
    checks = {}
    for service, spec in compose["services"].items():
        if not service.startswith("airflow-") or "healthcheck" not in spec:
            continue
        kind, *argv = spec["healthcheck"]["test"]
        text = (argv[0] if kind == "CMD-SHELL" else shlex.join(argv)).replace("$$", "$")
        text = text.replace("localhost:8080", f"127.0.0.1:{stack.port}").replace(
            "127.0.0.1:8974", f"127.0.0.1:{stack.health_port}"
        )
        if service == "airflow-worker":  # celery@<container host name> here: <worker>@<host>
            for worker in WORKERS:
                checks[worker] = text.replace(
                    "celery@${HOSTNAME}", f"{worker}@{socket.gethostname()}"
                )
        else:
            checks[service] = text
    env = {**stack.env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return {
        name: (
            text,
            subprocess.Popen(
                ["sh", "-c", text],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            ),
        )
        for name, text in checks.items()
    }


@pytest.fixture(scope="module")
def first(stack, embedded):
    """Three days back-filled in order, as the README tells users to; the windows overlap."""
    stack.backfill(*FIRST, max_active_runs=1)
    health = start_healthchecks(stack)
    expected = embedded.run("2026-10-30", "2026-10-31", "2026-11-01")
    runs = _wait(stack, 3)
    stack.mark("first back-fill")
    return {"runs": runs, "state": _state(stack), "expected": expected, "health": health}


def test_backfill_runs_every_day_to_success(first, stack):
    got = [(r["state"], r["interval_end"][:10]) for r in first["runs"]]
    assert got == [
        ("success", "2026-10-30"),
        ("success", "2026-10-31"),
        ("success", "2026-11-01"),
    ], {r["run_id"]: stack.task_instances(r["run_id"]) for r in first["runs"]}


def test_every_task_ran_on_a_celery_worker_and_both_workers_took_tasks(first, stack):
    ran_by = stack.celery_tasks()  # Celery task id -> worker, from the workers' own logs
    rows = stack.query(f"SELECT {WHERE} FROM task_instance")
    assert len(rows) == 3 * 10
    used = set()
    for task_id, try_number, state, hostname, queue, celery_id in rows:
        assert (state, hostname, queue) == ("success", stack.hostname, "default"), task_id
        assert celery_id in ran_by, f"{task_id}: Celery task {celery_id} in no worker's log"
        used.add(ran_by[celery_id])
    assert used == set(WORKERS)
    # the Celery result backend (PostgreSQL, beside Airflow's tables) saw each one succeed (a
    # worker stores the result after the task process reported to Airflow: wait for the last)
    ids = {row[5] for row in rows}

    def all_succeeded() -> bool:
        results = dict(stack.query("SELECT task_id, status FROM celery_taskmeta"))
        return all(results.get(i) == "SUCCESS" for i in ids)

    assert stack.wait("every Celery result stored as SUCCESS", all_succeeded, 30)


def test_alerts_and_tickets_equal_the_embedded_defaults(first):
    got, expected = first["state"], first["expected"]
    assert [a["id"] for a in got["alerts"]] == [a["id"] for a in expected["alerts"]]
    assert len(got["alerts"]) == 5  # the demo's planted cases of 10-29 and 10-30
    assert got == expected


def test_validate_tasks_find_great_expectations_preloaded_by_the_celery_worker(first, stack):
    logs = stack.task_logs("task_id=validate_*/map_index=0/attempt=*.log")
    assert len(logs) == 6  # two tables x three days
    for log in logs:
        assert "Great Expectations preloaded by the worker: True" in log.read_text(), log


def test_the_compose_healthchecks_pass_against_the_running_stack(first):
    healthchecks = first["health"]
    assert set(healthchecks) == {
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        *WORKERS,
    }
    failed = {}
    for name, (text, proc) in healthchecks.items():
        out = proc.communicate(timeout=180)[0].decode(errors="replace")
        if proc.returncode:
            failed[name] = (text, out[-2000:])
    assert not failed


@pytest.fixture(scope="module")
def rerun(first, stack):
    """The same three days again, all at once: both workers upsert and deliver concurrently."""
    tickets = stack.home / "detection" / "tickets"
    written = {p.name: p.stat().st_mtime_ns for p in tickets.glob("*.json")}
    started = stack.query("SELECT now()")[0][0]
    stack.backfill(*FIRST, 3, "--reprocess-behavior", "completed")
    runs = _wait(stack, 3)
    stack.mark("re-run")
    return {
        "runs": runs,
        "started": started,
        "state": _state(stack),
        "written": written,
        "rewritten": {p.name: p.stat().st_mtime_ns for p in tickets.glob("*.json")},
    }


def test_rerunning_the_backfill_adds_nothing(rerun, first):
    started = datetime.fromisoformat(rerun["started"])
    assert all(
        r["state"] == "success" and datetime.fromisoformat(r["start_date"]) > started
        for r in rerun["runs"]
    ), rerun["runs"]
    assert rerun["state"] == first["state"]  # same alerts, revisions, deliveries, tickets
    assert rerun["rewritten"] == rerun["written"], "a ticket file was written again"


@pytest.fixture(scope="module")
def killed(first, stack, embedded):
    """A new back-fill; once a validate task of it runs on a worker (it runs for seconds, and
    Data Docs, which comes after it, is not retried, by design), that worker's host is lost:
    SIGKILL to the worker, its pool and the task processes."""
    stack.backfill(KILLED, KILLED)
    run_id = stack.wait(
        "the new back-fill run",
        lambda: stack.query(
            "SELECT run_id FROM dag_run WHERE run_type = 'backfill' AND data_interval_start = "
            "%s::timestamptz",
            (f"{KILLED}T00:00:00Z",),
        ),
        60,
    )[0][0]
    deadline = time.monotonic() + 120
    while not (victim := stack.running_on(run_id, prefixes=("validate_",))):
        assert time.monotonic() < deadline, f"no task ran\n{stack.log_tails()}"
        time.sleep(0.1)
    task_id, worker = victim
    stack.kill_worker(worker)
    stack.mark("killed")
    expected = embedded.run("2026-11-02")
    runs = _wait(stack, 4)
    stack.mark("killed worker's back-fill")
    return {
        "run": next(r for r in runs if r["run_id"] == run_id),
        "task_id": task_id,
        "worker": worker,
        "state": _state(stack),
        "expected": expected,
    }


def test_a_run_survives_a_worker_killed_while_its_task_runs(killed, stack):
    run, worker = killed["run"], killed["worker"]
    assert run["state"] == "success", stack.task_instances(run["run_id"])
    survivor = next(w for w in WORKERS if w != worker)
    ran_by = stack.celery_tasks()
    tries = stack.query(
        f"SELECT {WHERE} FROM task_instance_history WHERE run_id = %s AND task_id = %s",
        (run["run_id"], killed["task_id"]),
    )
    assert [(t[1], ran_by.get(t[5])) for t in tries] == [(1, worker)], (
        "the killed try is on record as the victim's"
    )
    now = stack.task_instances(run["run_id"])[killed["task_id"]]
    assert (now["state"], now["try_number"]) == ("success", 2)
    assert ran_by[now["celery_task_id"]] == survivor


def test_a_killed_worker_duplicates_no_alert_or_ticket(killed):
    got, expected = killed["state"], killed["expected"]
    assert len(got["alerts"]) == 6  # the cross-midnight case is new
    assert got == expected
    created = [d[0] for d in got["deliveries"] if d[3] == "created"]
    assert len(created) == len(set(created)) == 6
