"""Fixtures of the alert store and destination tests (tests/fakes/fixtures.py): a PostgreSQL
schema per test, the fake Jira / ServiceNow / webhook servers."""

from tests.fakes.fixtures import fakes, jira, pg_url, servicenow, store_url, webhook  # noqa: F401
