"""Test set-up. Airflow reads its configuration at first import, so the isolated AIRFLOW_HOME
(SQLite metadata DB in a temp folder, examples off) is set here, before anything imports it."""

import os
import socket
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="airflow-home-"))
os.environ.update(
    AIRFLOW_HOME=str(_AIRFLOW_HOME),
    AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
    AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
    AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
    AIRFLOW__CORE__PARALLELISM="4",
)
os.environ.setdefault("PYTHONPATH", str(REPO))
# The scan cache of tests that use no detection_home (which gives them their own) stays out of
# the repository's .data/: one per test session (entries are keyed by file identity, so tests
# never see each other's).
os.environ.setdefault("DETECTION_CACHE", tempfile.mkdtemp(prefix="detection-cache-"))


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated Airflow metadata DB (dag.test() needs one)."""
    from airflow.utils import db

    db.initdb()
    return _AIRFLOW_HOME


@pytest.fixture
def detection_home(tmp_path, monkeypatch):
    """Isolated local state for the library: alert store, tickets, staging."""
    home = tmp_path / "home"
    monkeypatch.setenv("DETECTION_HOME", str(home))
    for var in (
        "DETECTION_SOURCE",
        "DETECTION_STAGING",
        "DETECTION_ALERT_STORE",
        "DETECTION_TICKET_DIR",
        "DETECTION_DESTINATIONS",
    ):
        monkeypatch.delenv(var, raising=False)
    return home


def service_available(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip locally when a service is missing; under CI=true its absence is a failure."""
    if service_available(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: services are part of the test environment)")
    pytest.skip(message)
