"""Issue #10 point 6: several Log Analytics workspaces (an MSSP's tenants) in one DAG run, one
mapped partition each, read from the query API fake on loopback (tests/fakes/loganalytics.py).
A workspace that refuses the identity (401) holds back no other workspace's alerts: those are
stored and delivered once, and the run still fails, naming the workspace that did not answer."""

import json
from datetime import datetime, timezone

import pytest

from include.detection import alerts, results
from include.detection.pipeline import detect
from include.detection.rule import load_rule
from include.detection.store import open_store
from tests.dags import test_dag_e2e
from tests.dags.test_dag_e2e import tickets, write_jsonl
from tests.factories import run_command, ueba_row
from tests.fakes.loganalytics import TOKEN, FakeLogAnalytics

pytestmark = pytest.mark.slow
dag = test_dag_e2e.dag  # the parsed DAG, the end-to-end tests' fixture
DAY = datetime(2026, 11, 1, tzinfo=timezone.utc)
HEALTHY = "6f2c3a1e-8d4b-4c1a-9e7f-2b5d8a9c0e11"
REFUSING = "0b9e7d6c-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
OTHER = "3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"


def tenant_rows(prefix: str, caller: str):
    activity = run_command(
        f"{prefix}-tp", start="2026-10-31T10:00:00Z", Caller=caller
    ) + run_command(
        f"{prefix}-failed",
        start="2026-10-31T10:10:00Z",
        Caller=caller,
        statuses=("Started", "Accepted", "Failed"),
    )
    ueba = [ueba_row(TimeGenerated="2026-10-31T09:30:00Z", UserPrincipalName=caller.lower())]
    return {"AzureActivity": activity, "BehaviorAnalytics": ueba}


@pytest.fixture
def workspaces(monkeypatch, detection_home):
    """Two tenants with a true positive each; the fake serves both."""
    tables = {
        HEALTHY: tenant_rows("healthy", "alice@contoso.com"),
        REFUSING: tenant_rows("refusing", "mallory@fabrikam.com"),
        OTHER: tenant_rows("other", "bob@northwind.com"),
    }
    fake = FakeLogAnalytics(tables).start()
    monkeypatch.setenv("DETECTION_LOGANALYTICS_ENDPOINT", fake.url)
    monkeypatch.setenv("DETECTION_LOGANALYTICS_TOKEN", TOKEN)
    monkeypatch.setenv("DETECTION_LOGANALYTICS_BACKOFF", "0.01")
    yield fake, tables
    fake.stop()


def run(dag, day=DAY):
    dagrun = dag.test(logical_date=day)
    states: dict[str, dict[int, str]] = {}
    for ti in dagrun.get_task_instances():
        states.setdefault(ti.task_id, {})[ti.map_index] = ti.state
    return dagrun, states


def expected_alerts(tmp_path, rows: dict, workspace: str) -> list[dict]:
    """What `detect` over the same rows as a folder gives, as that workspace's alerts."""
    folder = tmp_path / workspace
    write_jsonl(folder, rows["AzureActivity"], rows["BehaviorAnalytics"])
    result = detect(folder, DAY).result
    return alerts.build_alerts(
        result, load_rule(), "2026-10-30T00:00:00Z", DAY, "warnings", workspace=workspace
    )


def test_two_workspaces_each_examined_alone_ids_never_merge(
    dag,
    workspaces,
    monkeypatch,
    tmp_path,
    detection_home,
):
    fake, tables = workspaces
    monkeypatch.setenv("DETECTION_SOURCE", f"loganalytics://{HEALTHY},{OTHER}")
    dagrun, states = run(dag)
    assert dagrun.state == "success", states
    assert states["build_alerts"] == {0: "success", 1: "success"}
    with open_store() as store:
        stored = {a["id"]: a for a in store.alerts()}
    want = expected_alerts(tmp_path, tables[HEALTHY], HEALTHY) + expected_alerts(
        tmp_path, tables[OTHER], OTHER
    )
    assert sorted(stored) == sorted(a["id"] for a in want)
    for alert in want:
        got = stored[alert["id"]]
        assert got["custom_details"]["Workspace"] == [alert["workspace"]]
        key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
        assert sorted(map(key, got["evidence"])) == sorted(map(key, alert["evidence"]))
    # each workspace was asked for its own rows only: no query went to a workspace not named
    assert {q["workspace"] for q in fake.queries} == {HEALTHY, OTHER}
    assert tickets(detection_home) == sorted(f"{i}.json" for i in stored)


def test_a_workspace_answering_401_holds_back_no_other_and_fails_the_run_naming_it(
    dag, workspaces, monkeypatch, tmp_path, detection_home, capfd, caplog
):
    fake, tables = workspaces
    fake.fail(
        times=10**6,
        status=401,
        path=REFUSING,
        body=json.dumps(
            {"error": {"code": "AuthenticationFailed", "message": "identity not authorized (fake)"}}
        ),
    )
    monkeypatch.setenv("DETECTION_SOURCE", f"loganalytics://{REFUSING},{HEALTHY}")
    dagrun, states = run(dag)
    output = "".join(capfd.readouterr()) + caplog.text

    assert dagrun.state == "failed"
    # partition 0 is the refusing workspace, partition 1 the healthy one
    assert states["extract_azure_activity"][0] == "failed"
    assert states["build_alerts"] == {0: "upstream_failed", 1: "success"}
    assert states["deliver"] == {-1: "success"} and states["examined"] == {-1: "failed"}
    assert (
        f"not examined: workspace {REFUSING}; their failed tasks say why "
        f"(examined: workspace {HEALTHY})" in output
    )
    # the refusal names the workspace and the identity, never the token
    assert f"workspace {REFUSING}" in output and "DETECTION_LOGANALYTICS_TOKEN" in output
    assert TOKEN not in output

    with open_store() as store:
        stored = store.alerts()
    want = expected_alerts(tmp_path, tables[HEALTHY], HEALTHY)
    assert [a["id"] for a in stored] == [a["id"] for a in want] and len(want) == 1
    assert all(len(a["tickets"]) == 1 for a in stored)
    delivered = tickets(detection_home)
    assert delivered == [f"{want[0]['id']}.json"]

    # the refusing workspace is fixed and the interval re-run: its alert joins, nothing twice
    fake.faults.clear()
    dagrun, states = run(dag)
    assert dagrun.state == "success", states
    with open_store() as store:
        after = {a["id"]: a for a in store.alerts()}
    assert sorted(after) == sorted(
        a["id"] for a in want + expected_alerts(tmp_path, tables[REFUSING], REFUSING)
    )
    assert all(len(a["tickets"]) == 1 for a in after.values())
    assert set(delivered) < set(tickets(detection_home)) and len(tickets(detection_home)) == 2


def test_a_folder_source_is_one_partition_with_the_ids_it_always_had(
    dag,
    tmp_path,
    monkeypatch,
    detection_home,
):
    rows = tenant_rows("single", "alice@contoso.com")
    write_jsonl(tmp_path / "lake", rows["AzureActivity"], rows["BehaviorAnalytics"])
    monkeypatch.setenv("DETECTION_SOURCE", str(tmp_path / "lake"))
    dagrun, states = run(dag)
    assert dagrun.state == "success" and states["build_alerts"] == {0: "success"}
    result = results.to_records(detect(tmp_path / "lake", DAY).result)
    with open_store() as store:
        (alert,) = store.alerts()
    assert "Workspace" not in alert["custom_details"]
    assert (
        alert["id"]
        == alerts.build_alerts(
            detect(tmp_path / "lake", DAY).result, load_rule(), "2026-10-30T00:00:00Z", DAY
        )[0]["id"]
    )
    assert len(alert["evidence"]) == len(result)


def test_the_extract_signs_in_with_the_azure_connections_credential(
    dag,
    workspaces,
    monkeypatch,
    detection_home,
):
    """No static token: the only credential is what the `azure` connection gives (stubbed here
    by one that holds the fake's token: a real one would sign in to Entra ID)."""
    import include.airflow_connections as conns
    from include.detection.remote.loganalytics import StaticToken

    monkeypatch.delenv("DETECTION_LOGANALYTICS_TOKEN")
    asked = []
    monkeypatch.setattr(
        conns, "azure_credential", lambda conn_id=None: asked.append(conn_id) or StaticToken(TOKEN)
    )
    monkeypatch.setenv("DETECTION_SOURCE", f"loganalytics://{HEALTHY}")
    dagrun, states = run(dag)
    assert dagrun.state == "success", states
    assert len(asked) == 2  # one per extract (two tables) of the one workspace
