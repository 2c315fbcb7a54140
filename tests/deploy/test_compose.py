"""docker-compose.yaml and the Dockerfile are what tests/deploy/test_celery_distributed.py ran:
every service, image, command and environment variable is checked against the settings
bench/celery_stack.py starts its processes with (deploy/celery.env plus the places of the run).
Only places (host names, ports, paths, database names) and secrets differ, and the test's few
timing knobs (TEST_ONLY) never reach the compose file. No Docker engine is needed: the file is
parsed, never run."""

from __future__ import annotations

import json
import re
from importlib.metadata import version
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml

from bench.airflow_stack import PRELOAD
from bench.celery_stack import (
    COMMANDS,
    ENV_FILE,
    PLACES,
    SECRETS,
    SITE,
    TEST_ONLY,
    WORKERS,
    CeleryStack,
    preload_modules,
    shared_env,
)
from tests.conftest import REPO
from tests.test_project import PINS, requirements

# The Celery stack's pins (README "Deployment" says why these versions).
CELERY_PINS = {
    "apache-airflow-providers-celery": "3.26.0",
    "celery": "5.6.3",
    "kombu": "5.6.2",
    "redis": "6.4.0",
}
# Set in a container only: the image's entrypoint reads it, no Airflow process does.
CONTAINER_ONLY = {"DUMB_INIT_SETSID"}
# compose interpolation: ${NAME}, ${NAME:-default}, ${NAME:?message}
VARIABLE = re.compile(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}")
URLS = (
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CELERY__RESULT_BACKEND",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "DETECTION_ALERT_STORE",
)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text())


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> CeleryStack:
    """The distributed test's settings and commands (nothing is started)."""
    home = tmp_path_factory.mktemp("compose-check")
    return CeleryStack(home / "stack", home / "lake")


def airflow_services(compose: dict) -> list[str]:
    return [name for name in compose["services"] if name.startswith("airflow-")]


def service_env(compose: dict, name: str) -> dict[str, str]:
    """What a container of the service gets: its env_file, then `environment` over it."""
    from dotenv import dotenv_values

    service = compose["services"][name]
    files = service.get("env_file", [])
    env = {}
    for path in [files] if isinstance(files, str) else files:
        env.update(dotenv_values(REPO / path))
    env.update({k: str(v) for k, v in (service.get("environment") or {}).items()})
    return env


def interpolated(value: str) -> str:
    """The value compose uses when nothing is set: defaults filled in, a required variable as
    <NAME>."""
    return VARIABLE.sub(
        lambda m: m.group(3) if m.group(2) == ":-" else f"<{m.group(1)}>", value
    ).replace("$$", "$")


def scheme(url: str) -> str:
    return urlsplit(url).scheme


# --- the same services and commands ---------------------------------------------------------------


def test_compose_runs_the_services_the_distributed_test_ran(compose, ran):
    assert set(airflow_services(compose)) == set(COMMANDS)
    assert {"postgres", "redis"} <= compose["services"].keys()
    for name in airflow_services(compose):
        assert compose["services"][name]["command"] == COMMANDS[name], name
    # the test's workers: the same command, under two host names
    for worker in WORKERS:
        assert ran.commands[f"airflow-{worker}"] == [
            *COMMANDS["airflow-worker"],
            "--celery-hostname",
            f"{worker}@%h",
        ]
    assert {n: c for n, c in ran.commands.items() if "worker" not in n} == {
        n: c for n, c in COMMANDS.items() if n not in ("airflow-worker", "airflow-init")
    }


def test_every_airflow_service_runs_the_image_built_from_the_dockerfile(compose):
    images = {
        (compose["services"][n]["image"], compose["services"][n]["build"])
        for n in airflow_services(compose)
    }
    assert images == {("detection-airflow:3.3.2", ".")}


def test_the_image_installs_the_requirements_the_test_ran_with():
    dockerfile = (REPO / "Dockerfile").read_text()
    python = "{}.{}".format(*__import__("sys").version_info[:2])
    assert re.search(
        rf"^FROM apache/airflow:{PINS['apache-airflow']}-python{python}$", dockerfile, re.M
    )
    assert re.search(r"^COPY requirements\.txt /requirements\.txt$", dockerfile, re.M)
    assert re.search(r"^RUN pip install .*-r /requirements\.txt$", dockerfile, re.M)
    # the build context is what the image copies, never .venv or the ~12 GB of bench lakes
    ignored = [
        line
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    copied = re.findall(r"^COPY (?:--\S+ )*(\S+) ", dockerfile, re.M)
    assert ignored[0] == "*" and {f"!{c}" for c in copied} <= set(ignored), (copied, ignored)


def test_celery_pins_are_exact_installed_and_the_executor_imports():
    """celery 5.7 dropped `retry` from celery.backends.database, which every provider version
    imports: the executor then fails to load with misleading messages."""
    reqs = requirements()
    for name, pinned in CELERY_PINS.items():
        assert reqs[name] == pinned, name
        assert version(name) == pinned, name
    from airflow.executors.base_executor import BaseExecutor
    from airflow.providers.celery.executors.celery_executor import CeleryExecutor

    assert issubclass(CeleryExecutor, BaseExecutor)


# --- the same environment ------------------------------------------------------------------------


def test_every_variable_the_test_sets_is_classified(ran):
    shared = set(shared_env())
    assert not shared & set(PLACES + SECRETS + SITE)
    assert set(ran.deployment_env) == shared | set(PLACES) | set(SECRETS) | set(SITE)
    assert not set(TEST_ONLY) & set(ran.deployment_env)


@pytest.mark.parametrize(
    "service",
    [
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
    ],
)
def test_service_environment_is_the_tests(compose, ran, service):
    env = service_env(compose, service)
    assert set(env) - CONTAINER_ONLY == set(ran.deployment_env), service
    assert not set(env) & set(TEST_ONLY), "a test-only timing knob reached the deployment"
    for key, value in shared_env().items():
        assert env[key] == value == ran.env[key], key
    for key in SECRETS:
        assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", env[key]), f"{key} must be required"
    for key in SITE:
        assert re.fullmatch(r"\$\{\w+:-[^}]+\}", env[key]), f"{key}: the site's, with a default"
    for key in URLS:
        assert scheme(interpolated(env[key])) == scheme(ran.env[key]), key
    for key in (
        "AIRFLOW_HOME",
        "AIRFLOW__CORE__DAGS_FOLDER",
        "AIRFLOW__CORE__PLUGINS_FOLDER",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER",
        "DETECTION_HOME",
        "DETECTION_STAGING",
        "DETECTION_TICKET_DIR",
        "PYTHONPATH",
    ):
        assert PurePosixPath(interpolated(env[key])).is_absolute(), key


@pytest.mark.parametrize("who", ["compose", "test"])
def test_urls_connect_the_same_services(compose, ran, who):
    env = (
        {k: interpolated(v) for k, v in service_env(compose, "airflow-scheduler").items()}
        if who == "compose"
        else ran.env
    )
    meta = urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert meta.scheme == "postgresql+psycopg"  # psycopg 3: the only driver installed
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] == meta.geturl()
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+" + meta.geturl()
    store = urlsplit(env["DETECTION_ALERT_STORE"])
    assert (store.scheme, store.netloc) == ("postgresql", meta.netloc)
    assert store.path != meta.path, "the alert store has a database of its own"
    assert scheme(env["AIRFLOW__CELERY__BROKER_URL"]) == "redis"
    api = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert (api.scheme, api.port, api.path) == (
        "http",
        int(env["AIRFLOW__API__PORT"]),
        "/execution/",
    )
    assert api.hostname == ("airflow-apiserver" if who == "compose" else env["AIRFLOW__API__HOST"])


def test_workers_preload_the_list_the_scheduler_preloads():
    makefile = (REPO / "Makefile").read_text()
    forkserver = re.search(r"MP_FORKSERVER_PRELOAD := (\S+)", makefile).group(1)
    assert preload_modules() == forkserver.split(",") == PRELOAD.split(",")
    assert json.loads(shared_env()["AIRFLOW__CELERY__EXTRA_CELERY_CONFIG"]) == {
        "imports": preload_modules()
    }


def test_celery_env_reads_the_same_in_compose_python_and_a_shell():
    """Compose and python-dotenv strip single quotes and interpolate $ outside them; a shell
    (the processes started by hand) reads the file as the same values."""
    import subprocess

    assert not [
        line
        for line in ENV_FILE.read_text().splitlines()
        if "$" in line and not line.startswith("#")
    ]
    out = subprocess.run(
        ["bash", "-c", f"set -a; . '{ENV_FILE}'; env -0"],
        env={},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    shell = dict(line.split("=", 1) for line in out.split("\0") if "=" in line)
    assert {k: shell.get(k) for k in shared_env()} == shared_env()


def test_compose_holds_no_literal_secrets():
    text = (REPO / "docker-compose.yaml").read_text()
    for match in re.finditer(r"^\s*[A-Z_]*(PASSWORD|SECRET|TOKEN|KEY)[A-Z_]*:\s*(\S+)", text, re.M):
        assert match.group(2).startswith(("${", '"${')), f"literal secret: {match.group(0)}"
    assert not re.search(r"://[^$/\s]+:[^$@\s{]+@", text), "credentials inside a URL"


# --- volumes, health, start order ----------------------------------------------------------------


@pytest.mark.parametrize(
    "service",
    [
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
    ],
)
def test_service_shares_logs_and_data_and_mounts_the_project(compose, service):
    env = service_env(compose, service)
    mounts = dict(reversed(v.split(":")[:2]) for v in compose["services"][service]["volumes"])
    assert mounts[env["AIRFLOW__LOGGING__BASE_LOG_FOLDER"]] == "airflow-logs"
    assert "airflow-logs" in compose["volumes"]
    assert mounts[env["DETECTION_HOME"]] == "./data"
    assert mounts[env["AIRFLOW__CORE__DAGS_FOLDER"]] == "./dags"
    assert mounts[env["AIRFLOW__CORE__PLUGINS_FOLDER"]] == "./plugins"
    assert mounts[f"{env['PYTHONPATH']}/include"] == "./include"
    for host in mounts.values():
        if host.startswith("./") and host != "./data":
            assert (REPO / host).exists(), host


def test_every_long_running_service_has_a_healthcheck(compose):
    for name, service in compose["services"].items():
        if name == "airflow-init":  # one-shot: the others wait for its exit status
            assert service["restart"] == "no"
            continue
        assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name


def test_airflow_starts_after_its_databases_and_migration(compose):
    for name in airflow_services(compose):
        deps = compose["services"][name]["depends_on"]
        assert deps["postgres"]["condition"] == deps["redis"]["condition"] == "service_healthy"
        if name != "airflow-init":
            assert deps["airflow-init"]["condition"] == "service_completed_successfully"
    worker = compose["services"]["airflow-worker"]["depends_on"]
    assert worker["airflow-apiserver"]["condition"] == "service_healthy"
