"""A real Airflow (bench/airflow_stack.py) on the demo lake with one back-filled day, and headless
Chromium driven by Selenium through the system chromedriver (Selenium Manager would try to
download a driver: no internet here, and the driver must match the installed Chromium anyway).

Screenshots land in `.data/screenshots/` (git-ignored); a failed test leaves
`FAILED-<test>-<user>.png` there too."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from bench.airflow_stack import DAG_ID, AirflowStack, StackTimeout
from detection_tools import lakegen as demo
from tests.conftest import REPO

CHROMIUM = Path(os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
SHOTS = REPO / ".data" / "screenshots"
WINDOW = (1400, 1000)
# Generous: the API server renders the first page of the SPA cold, on 2 shared vCPUs.
TIMEOUT = 60
# Logical date of the back-filled day: interval [10-30, 10-31), the rule's window [10-29, 10-31).
DAY = "2026-10-30"
WINDOW_START, WINDOW_END = "2026-10-29", "2026-10-31"
USERS = {"admin": "admin", "analyst": "viewer"}


def require_browser() -> None:
    """Skip locally when Chromium, its driver or Selenium is missing; under CI=true it is a
    failure naming the install command (as tests/conftest.py require_service does)."""
    missing = []
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium: .venv/bin/pip install -r requirements-dev.txt")
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            missing.append(f"{path}: apt-get install -y {package}")
    if not missing:
        return
    message = "the browser test needs " + "; ".join(missing)
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: .ci/run installs them)")
    pytest.skip(message)


@dataclass
class Console:
    stack: AirflowStack
    base: str
    passwords: dict
    run_id: str

    def expected_alerts(self, caller: str = "") -> list[dict]:
        """The demo's ground truth in the back-filled window, optionally for one caller."""
        return [
            c
            for c in demo.planted_cases()
            if c["expected_alert"]
            and WINDOW_START <= str(c["run_start"])[:10] < WINDOW_END
            and caller in c["caller"].lower()
        ]

    def tickets(self) -> list[Path]:
        return sorted((self.stack.home / "detection" / "tickets").glob("*.json"))

    def run_url(self) -> str:
        return f"{self.base}/dags/{DAG_ID}/runs/{quote(self.run_id, safe='')}"


@pytest.fixture(scope="module")
def browser_ready():
    require_browser()
    SHOTS.mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="module")
def console(browser_ready, tmp_path_factory):
    """API server, scheduler and DAG processor with the simple auth manager's users, and one
    back-filled day, so the store holds alerts that a DAG run created."""
    home = tmp_path_factory.mktemp("console-stack")
    passwords = home / "passwords.json"
    users = ",".join(f"{u}:{r}" for u, r in USERS.items())
    env = {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": users,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        # No scheduled catch-up runs beside the back-fill: the scheduler would run every day
        # since 2026-10-27 up to today, touching the same alerts and sharing the 2 CPUs.
        # A back-fill is not clipped to the start date.
        "DETECTION_START_DATE": "2099-01-01",
    }
    with AirflowStack(home, demo.ensure_demo_lake(home / "lake"), extra_env=env) as stack:
        stack.backfill(DAY, DAY)
        try:
            stack.wait(
                "the back-fill run to finish, or a task of it to fail",
                lambda: _finished_or_failing(stack),
                600,
            )
        except StackTimeout as exc:
            states = stack.query("SELECT run_id, task_id, state, try_number FROM task_instance")
            pytest.fail(f"{exc}\ntask instances: {states}")
        (run,) = stack.backfill_runs()
        assert run["state"] == "success", _failures(stack, run["run_id"])
        secrets = stack.wait(
            "the simple auth manager's passwords file", lambda: _json_or_none(passwords), 60
        )
        yield Console(stack, f"http://127.0.0.1:{stack.port}", secrets, run["run_id"])


def _finished_or_failing(stack: AirflowStack) -> bool:
    """A task up for retry fails the fixture now: the DAG retries after minutes, for outages in
    production; here the same code would fail again."""
    runs = stack.backfill_runs()
    if len(runs) == 1 and runs[0]["state"] in ("success", "failed"):
        return True
    return bool(runs) and any(
        t["state"] in ("up_for_retry", "failed")
        for t in stack.task_instances(runs[0]["run_id"]).values()
    )


def _failures(stack: AirflowStack, run_id: str) -> str:
    """Each failed task's state and the last error its log reports."""
    lines = []
    for task, ti in stack.task_instances(run_id).items():
        if ti["state"] not in ("up_for_retry", "failed"):
            continue
        errors = [
            _error(line)
            for log in stack.task_logs(f"task_id={task}/**/attempt=*.log")
            for line in log.read_text(errors="replace").splitlines()
            if '"level":"error"' in line
        ]
        lines.append(f"{task}: {ti['state']}; {errors[-1] if errors else 'no error logged'}")
    return "\n".join(lines) or str(stack.task_instances(run_id))


def _error(line: str) -> str:
    """`ExcType: message` from a task log's JSON error line (the raw line if it is not one)."""
    try:
        detail = json.loads(line)["error_detail"][-1]
        return f"{detail['exc_type']}: {detail['exc_value']}"
    except (ValueError, KeyError, IndexError, TypeError):
        return line[:2000]


def _json_or_none(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _driver(log: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--lang=en-US",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(arg)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(log))
    return webdriver.Chrome(service=service, options=options)


def _logged_in(console: Console, user: str, tmp_path_factory):
    """A browser session that signed in through the simple auth manager's login form."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _driver(tmp_path_factory.mktemp(f"chromedriver-{user}") / "chromedriver.log")
    try:
        wait = WebDriverWait(driver, TIMEOUT)
        driver.get(console.base + "/")
        wait.until(EC.url_contains("/auth/login"), "the UI did not send a new browser to login")
        wait.until(EC.visibility_of_element_located((By.NAME, "username"))).send_keys(user)
        driver.find_element(By.NAME, "password").send_keys(console.passwords[user])
        wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, "button[type=submit]"))).click()
        wait.until(lambda d: "/auth/login" not in d.current_url, f"{user} could not sign in")
    except BaseException:
        driver.quit()
        raise
    return driver


@pytest.fixture(scope="module")
def analyst(console, tmp_path_factory):
    driver = _logged_in(console, "analyst", tmp_path_factory)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def admin(console, tmp_path_factory):
    driver = _logged_in(console, "admin", tmp_path_factory)
    yield driver
    driver.quit()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and report.failed:
        for user in USERS:
            driver = item.funcargs.get(user)
            if driver is None:
                continue
            try:
                driver.switch_to.default_content()
                driver.save_screenshot(str(SHOTS / f"FAILED-{item.name}-{user}.png"))
            except Exception:  # noqa: BLE001 - a dead browser must not hide the test's own failure
                pass
    return report
