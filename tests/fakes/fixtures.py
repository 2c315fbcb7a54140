"""Fixtures for the alert store and destination tests: a PostgreSQL schema per test, the fake
services, fast HTTP retry settings. Import them into a test module (or a conftest)."""

from __future__ import annotations

import os
import uuid

import pytest

from tests.conftest import require_service
from tests.fakes import FakeJira, FakeServiceNow, FakeWebhook

PG_BASE = os.environ.get("DETECTION_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
# Retries fast enough for tests, slow enough to see: 3 attempts, ms backoff, 0.5 s timeout.
FAST_HTTP = {"timeout": 0.5, "attempts": 3, "backoff": 0.01, "max_wait": 2.0}


def pg_schema_url(schema: str) -> str:
    return f"{PG_BASE}?options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_url():
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    require_service("PostgreSQL", "127.0.0.1", 5432)
    import psycopg

    schema = f"detection_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield pg_schema_url(schema)
    finally:
        with psycopg.connect(PG_BASE, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """The same test against SQLite (a file) and PostgreSQL (a schema)."""
    if request.param == "sqlite":
        return str(tmp_path / "alerts.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def jira():
    with FakeJira() as fake:
        yield fake


@pytest.fixture
def servicenow():
    with FakeServiceNow() as fake:
        yield fake


@pytest.fixture
def webhook():
    with FakeWebhook() as fake:
        yield fake


@pytest.fixture
def fakes(jira, servicenow, webhook):
    return {"jira": jira, "servicenow": servicenow, "webhook": webhook}


def settings_for(fakes: dict, tmp_path=None, **http) -> dict:
    """Destination settings pointing at the fakes, with fast retries."""
    tune = {**FAST_HTTP, **http}
    out = {
        "jira": {
            "url": fakes["jira"].url,
            "user": fakes["jira"].user,
            "token": fakes["jira"].password,
            "project": fakes["jira"].project,
            **tune,
        },
        "servicenow": {
            "url": fakes["servicenow"].url,
            "user": fakes["servicenow"].user,
            "password": fakes["servicenow"].password,
            **tune,
        },
        "webhook": {
            "url": fakes["webhook"].url + fakes["webhook"].path,
            "secret": fakes["webhook"].secret,
            **tune,
        },
    }
    if tmp_path is not None:
        out["file"] = {"folder": str(tmp_path / "tickets")}
    return out


def env_for(fakes: dict, **http) -> dict:
    """The same as environment variables (what the CLI and the DAG read)."""
    tune = {**FAST_HTTP, **http}
    j, s, w = fakes["jira"], fakes["servicenow"], fakes["webhook"]
    env = {
        "DETECTION_JIRA_URL": j.url,
        "DETECTION_JIRA_USER": j.user,
        "DETECTION_JIRA_TOKEN": j.password,
        "DETECTION_JIRA_PROJECT": j.project,
        "DETECTION_SERVICENOW_URL": s.url,
        "DETECTION_SERVICENOW_USER": s.user,
        "DETECTION_SERVICENOW_PASSWORD": s.password,
        "DETECTION_WEBHOOK_URL": w.url + w.path,
        "DETECTION_WEBHOOK_SECRET": w.secret,
    }
    env.update({f"DETECTION_HTTP_{k.upper()}": str(v) for k, v in tune.items()})
    return env
