"""The DAG's build_alerts / deliver tasks with dag.test(): the alert store named by an Airflow
connection id (PostgreSQL), a destination outage failing `deliver` visibly, and the next run
delivering every pending alert once."""

import json
from datetime import datetime, timezone

import pytest

from include.detection.store import AlertStore
from tests.conftest import REPO
from tests.factories import run_command, ueba_row
from tests.fakes.fixtures import env_for

pytestmark = pytest.mark.slow
DAY = datetime(2026, 11, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags")).dags["runcommand_ueba_breach"]
    for t in dag.tasks:
        t.retries = 0  # a failure must show now, not after retry delays
    dag.deadline = None  # dag.test() crashes on a DAG with one (apache/airflow#73428)
    return dag


@pytest.fixture
def configured(tmp_path, monkeypatch, detection_home, fakes, pg_url):
    source = tmp_path / "source"
    source.mkdir()
    activity = run_command("tp-1") + run_command("tp-2", start="2026-10-31T11:00:00Z")
    for name, rows in (("AzureActivity", activity), ("BehaviorAnalytics", [ueba_row()])):
        (source / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv("DETECTION_SOURCE", str(source))
    # The store by connection id: resolved in the DAG (airflow.sdk Connection), env-defined here.
    monkeypatch.setenv("AIRFLOW_CONN_DETECTIONS_DB", pg_url.replace("postgresql://", "postgres://"))
    monkeypatch.setenv("DETECTION_ALERT_STORE", "detections_db")
    monkeypatch.setenv("DETECTION_DESTINATIONS", "file,jira")
    for key, value in env_for(fakes).items():
        monkeypatch.setenv(key, value)
    return fakes


def states(dagrun):
    return {ti.task_id: ti.state for ti in dagrun.get_task_instances()}


def test_deliver_fails_while_jira_is_down_and_the_next_run_delivers_each_alert_once(
    dag, configured, pg_url, detection_home
):
    jira = configured["jira"]
    jira.down()
    dagrun = dag.test(logical_date=DAY)
    assert dagrun.state == "failed"
    assert states(dagrun)["build_alerts"] == "success" and states(dagrun)["deliver"] == "failed"
    with AlertStore(pg_url) as store:
        ids = [a["id"] for a in store.alerts()]
        assert len(ids) == 2, "the alerts are in the store named by the connection"
        assert sorted(store.pending_ids("jira")) == sorted(ids) and store.pending_ids("file") == []
    assert len(list((detection_home / "tickets").glob("*.json"))) == 2, "file was not blocked"

    jira.up()
    assert dag.test(logical_date=DAY).state == "success"  # the retry / next run
    assert sorted(len(jira.by_label(f"detection-alert-{i}")) for i in ids) == [1, 1]
    with AlertStore(pg_url) as store:
        assert [e["action"] for e in store.delivery_log() if e["destination"] == "jira"] == [
            "created"
        ] * 2
