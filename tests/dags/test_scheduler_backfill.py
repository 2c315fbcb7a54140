"""Back-fill through the real scheduler, as users run history: API server, scheduler (LocalExecutor,
workers forked from a forkserver that preloads include.detection.preload) and DAG processor as
separate processes, a SQLite metadata DB, the demo lake (bench/airflow_stack.py).
`airflow backfill create` over two days whose 2-day windows overlap must give each alert once and
one ticket per alert, and the validate tasks must find Great Expectations already imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psutil
import pytest
import requests

from bench.airflow_stack import AirflowStack, StackTimeout
from detection_tools import lakegen as demo
from tests.conftest import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-stack")
    users = {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,analyst:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
    }
    with AirflowStack(home, demo.ensure_demo_lake(home / "lake"), extra_env=users) as stack:
        yield stack


@pytest.fixture(scope="module")
def backfill(stack):
    """Two daily intervals, ending 2026-10-31 and 2026-11-01 (logical dates 10-30 and 10-31), in
    order, as the README tells users to back-fill."""
    stack.backfill("2026-10-30", "2026-10-31", max_active_runs=1)
    try:
        return stack.wait_for_runs(2)
    except StackTimeout as exc:
        states = stack.query(
            "SELECT run_id, task_id, state, try_number FROM task_instance ORDER BY run_id"
        )
        pytest.fail(f"{exc}\ntask instances: {states}")


def test_backfill_runs_every_interval_to_success(backfill, stack):
    got = [(r["state"], r["interval_start"][:10], r["interval_end"][:10]) for r in backfill]
    assert got == [
        ("success", "2026-10-30", "2026-10-31"),
        ("success", "2026-10-31", "2026-11-01"),
    ], {r["run_id"]: stack.task_instances(r["run_id"]) for r in backfill}


def test_overlapping_backfill_windows_give_each_alert_and_ticket_once(backfill, stack):
    out = subprocess.run(
        [sys.executable, "-m", "include.detection", "alerts", "list"],
        env=stack.env,
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    ).stdout
    ids = [json.loads(line)["id"] for line in out.splitlines() if line.strip()]
    # the demo's ground truth over both windows, [10-29, 11-01): Run Command executions to alert on
    expected = {
        c["name"]
        for c in demo.planted_cases()
        if c["expected_alert"] and "2026-10-29" <= str(c["run_start"])[:10] < "2026-11-01"
    }
    assert len(ids) == len(set(ids)) == len(expected) == 5
    tickets = list((stack.home / "detection" / "tickets").glob("*.json"))
    assert sorted(t.stem for t in tickets) == sorted(ids)


def test_validate_tasks_find_great_expectations_preloaded_by_the_worker(backfill, stack):
    logs = stack.task_logs("task_id=validate_*/map_index=0/attempt=*.log")
    assert len(logs) >= 4  # two tables x two intervals
    for log in logs:
        assert "Great Expectations preloaded by the worker: True" in log.read_text(), log


def test_the_api_server_listens_on_loopback_only(stack):
    """What this stack's own processes (its process groups) listen on: other Airflows may run
    on the machine."""
    assert stack.env["AIRFLOW__API__HOST"] == "127.0.0.1"
    groups = {p.pid for p in stack.procs}

    def ours(pid):
        try:
            return pid is not None and os.getpgid(pid) in groups
        except ProcessLookupError:
            return False

    def listening():
        return {
            c.laddr
            for c in psutil.net_connections("inet")
            if c.status == psutil.CONN_LISTEN and ours(c.pid)
        }

    stack.wait(
        "the API server to listen", lambda: any(a.port == stack.port for a in listening()), 120
    )
    listening = listening()
    assert ("127.0.0.1", stack.port) in listening
    assert all(a.ip == "127.0.0.1" for a in listening), listening
    assert not any(a.port in (8793, 8794) for a in listening), "no task log server is needed here"


def test_plugin_routes_need_the_airflow_login_on_a_running_api_server(backfill, stack):
    """Issue #11 point 1 on the real thing: anonymous requests get 401/403 and no alert data;
    after `POST /auth/token` as a viewer the same routes answer 200."""
    base = f"http://127.0.0.1:{stack.port}"
    ids = [
        json.loads(line)["id"]
        for line in subprocess.run(
            [sys.executable, "-m", "include.detection", "alerts", "list"],
            env=stack.env,
            check=True,
            capture_output=True,
            text=True,
            cwd=REPO,
        ).stdout.splitlines()
        if line.strip()
    ]
    routes = ["/detections/", f"/detections/alerts/{ids[0]}"]
    for route in routes:
        anonymous = requests.get(base + route, timeout=30)
        assert anonymous.status_code in (401, 403), (route, anonymous.status_code)
        assert "@" not in anonymous.text and ids[0] not in anonymous.text
    assert requests.post(
        f"{base}/detections/alerts/{ids[0]}/redeliver", timeout=30
    ).status_code in (401, 403)
    passwords = json.loads((stack.home / "passwords.json").read_text())
    token = requests.post(
        f"{base}/auth/token",
        json={"username": "analyst", "password": passwords["analyst"]},
        timeout=30,
    ).json()["access_token"]
    for route in routes:
        page = requests.get(base + route, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert page.status_code == 200 and ids[0] in page.text, route
    viewer_redeliver = requests.post(
        f"{base}/detections/alerts/{ids[0]}/redeliver",
        timeout=30,
        headers={"Authorization": f"Bearer {token}", "X-Detections-Request": "redeliver"},
    )
    assert viewer_redeliver.status_code == 403, "a viewer may read alerts, not redeliver them"


def test_the_scheduled_run_for_today_on_the_demo_lake_is_a_skip_saying_no_data_yet(stack):
    """Issue #11: a new user who unpauses the DAG on the demo lake sees no failed run for today
    (the stack starts the DAG yesterday: the scheduler runs today's interval)."""

    def finished():
        runs = stack.runs("scheduled")
        return runs if runs and all(r["state"] in ("success", "failed") for r in runs) else None

    (run,) = stack.wait("today's scheduled run", finished, 300)
    tasks = stack.task_instances(run["run_id"])
    assert run["state"] == "success" and tasks.pop("partitions")["state"] == "success"
    assert {t["state"] for t in tasks.values()} == {"skipped"}
    (log,) = stack.task_logs(
        f"run_id={run['run_id']}/task_id=extract_azure_activity/map_index=0/attempt=*.log"
    )
    assert "no data yet for the interval" in log.read_text()
