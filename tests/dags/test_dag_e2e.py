"""The DAG end to end with dag.test(), in-process, on generated data in a temp folder."""

import json
from datetime import datetime, timezone

import pytest

from include.detection import results
from include.detection.pipeline import detect
from include.detection.store import open_store
from tests.conftest import REPO
from tests.factories import run_command, ueba_row

pytestmark = pytest.mark.slow
DAY = datetime(2026, 11, 1, tzinfo=timezone.utc)


def write_jsonl(folder, activity_rows, ueba_rows):
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("AzureActivity", activity_rows), ("BehaviorAnalytics", ueba_rows)):
        with open(folder / f"{name}.jsonl", "w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)


@pytest.fixture
def source(tmp_path, monkeypatch, detection_home):
    folder = tmp_path / "source"
    activity = (
        run_command("tp-1", start="2026-10-31T10:00:00Z")
        + run_command("tp-2", start="2026-10-30T23:00:00Z", Caller="Bob@contoso.com")
        + run_command(
            "failed", start="2026-10-31T10:10:00Z", statuses=("Started", "Accepted", "Failed")
        )
        + run_command("late", start="2026-10-31T16:30:00.0000001Z")
    )
    ueba = [
        ueba_row(TimeGenerated="2026-10-31T09:30:00Z"),
        ueba_row(TimeGenerated="2026-10-30T20:00:00Z", UserPrincipalName="bob@contoso.com"),
        ueba_row(TimeGenerated="2026-10-31T11:00:00Z", EventSource="AzureAD"),
    ]
    write_jsonl(folder, activity, ueba)
    monkeypatch.setenv("DETECTION_SOURCE", str(folder))
    return folder


@pytest.fixture(scope="module")
def dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    dag = bag.dags["runcommand_ueba_breach"]
    for t in dag.tasks:
        t.retries = 0  # a failure must show now, not after retry delays
    dag.deadline = None  # dag.test() crashes on a DAG with one (apache/airflow#73428)
    return dag


def run(dag, day=DAY):
    dagrun = dag.test(logical_date=day)
    states = {ti.task_id: ti.state for ti in dagrun.get_task_instances()}
    return dagrun, states


def tickets(home):
    folder = home / "tickets"
    return sorted(p.name for p in folder.glob("*.json")) if folder.exists() else []


def test_dag_run_delivers_alerts_whose_evidence_is_the_detect_result(dag, source, detection_home):
    dagrun, states = run(dag)
    assert dagrun.state == "success", states
    assert (dagrun.data_interval_start, dagrun.data_interval_end) == (
        datetime(2026, 10, 31, tzinfo=timezone.utc),
        DAY,
    )

    expected = results.to_records(detect(source, DAY).result)
    with open_store() as store:
        alerts = store.alerts()
    evidence = [row for a in alerts for row in a["evidence"]]
    key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
    assert sorted(map(key, evidence)) == sorted(map(key, expected))
    assert sorted(a["correlation_id"] for a in alerts) == ["tp-1", "tp-2"]
    # a handful of rows cannot prove the window complete: recorded as warnings, not hidden
    assert all(a["severity"] == "High" and a["data_quality"] == "warnings" for a in alerts)
    assert all(len(a["tickets"]) == 1 and a["tickets"][0]["destination"] == "file" for a in alerts)
    assert tickets(detection_home) == sorted(f"{a['id']}.json" for a in alerts)

    staged = detection_home / "staging"
    assert len(list(staged.rglob("result.parquet"))) == 1, "one interval-keyed folder per run"


def test_rerun_and_next_days_overlapping_window_add_no_alert_or_ticket(dag, source, detection_home):
    assert run(dag)[0].state == "success"
    with open_store() as store:
        first = {a["id"]: a for a in store.alerts()}
    first_tickets = tickets(detection_home)

    assert run(dag)[0].state == "success"  # same interval again
    assert run(dag, datetime(2026, 11, 2, tzinfo=timezone.utc))[0].state == "success"  # overlap
    with open_store() as store:
        after = {a["id"]: a for a in store.alerts()}
    assert after.keys() == first.keys()
    assert tickets(detection_home) == first_tickets
    assert all(len(a["tickets"]) == 1 for a in after.values())


def test_missing_column_fails_at_validation_and_delivers_nothing(
    dag, tmp_path, monkeypatch, detection_home
):
    rows = [{k: v for k, v in r.items() if k != "SourceIPLocation"} for r in [ueba_row()]]
    write_jsonl(tmp_path / "bad", run_command(), rows)
    monkeypatch.setenv("DETECTION_SOURCE", str(tmp_path / "bad"))
    dagrun, states = run(dag)
    assert dagrun.state == "failed"
    assert states["validate_behavior_analytics"] == "failed"
    assert states["correlate"] == "upstream_failed" and states["deliver"] == "skipped"
    assert states["examined"] == "failed"
    assert tickets(detection_home) == []
    # the failed validation is the one whose Data Docs someone will open
    assert states["data_docs"] == "success"
    docs = next((detection_home / "staging").rglob("data_docs"))
    page = docs / "BehaviorAnalytics" / "index.html"
    assert page.exists()


def test_empty_behavior_analytics_fails_at_validation_with_a_clear_message(
    dag, tmp_path, monkeypatch, detection_home, capfd
):
    write_jsonl(tmp_path / "empty", run_command(), [ueba_row(TimeGenerated="2026-10-01T00:00:00Z")])
    monkeypatch.setenv("DETECTION_SOURCE", str(tmp_path / "empty"))
    dagrun, states = run(dag)
    assert dagrun.state == "failed"
    assert states["extract_behavior_analytics"] == "success"
    assert states["validate_behavior_analytics"] == "failed"
    assert states["build_alerts"] == "upstream_failed" and states["deliver"] == "skipped"
    assert "BehaviorAnalytics: not_empty failed (observed: 0 rows in the window)" in "".join(
        capfd.readouterr()
    )
    assert tickets(detection_home) == []


def test_incomplete_window_fails_at_extract_as_incomplete_data(
    dag, tmp_path, monkeypatch, detection_home, capfd
):
    import pandas as pd

    from tests.factories import activity_row

    hours = pd.date_range("2026-10-30T00:10:00Z", "2026-10-31T12:00:00Z", freq="15min")
    rows = [
        activity_row(OperationNameValue="Microsoft.Storage/x/read", TimeGenerated=t.isoformat())
        for t in hours
    ]
    write_jsonl(tmp_path / "late", rows, [ueba_row()])
    monkeypatch.setenv("DETECTION_SOURCE", str(tmp_path / "late"))
    dagrun, states = run(dag)
    assert dagrun.state == "failed" and states["extract_azure_activity"] == "failed"
    assert "AzureActivity.TimeGenerated: fresh failed" in "".join(capfd.readouterr())
    assert tickets(detection_home) == []


def test_data_docs_and_validation_results_are_kept_per_run(dag, source, detection_home):
    assert run(dag)[0].state == "success"
    folder = next((detection_home / "staging").rglob("data_docs"))
    for table in ("AzureActivity", "BehaviorAnalytics"):
        assert (folder / table / "index.html").exists()
        # the validate task's own verdict (what gated the alerts) and the docs' re-run agree
        gate = json.loads((folder.parent / "quality" / f"{table}.validation.json").read_text())
        docs = json.loads((folder / table / f"{table}.validation.json").read_text())
        assert gate["summary"]["status"] == docs["summary"]["status"] != "failed"
        assert gate["summary"]["warnings"] == docs["summary"]["warnings"]


# --- issue #11: every examined interval on record, no silent gaps, the on-call hears of it ------


def asset_events(run_id: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetModel.uri, AssetEvent.source_task_id, AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetEvent.source_run_id == run_id)
        ).all()
    return [{"uri": u, "task_id": t, "extra": e} for u, t, e in rows]


def test_each_examined_interval_records_an_alerts_asset_event_with_counts_and_quality(
    dag, source, detection_home
):
    dagrun, states = run(dag)
    assert dagrun.state == "success", states
    events = asset_events(dagrun.run_id)
    assert [(e["uri"], e["task_id"]) for e in events] == [
        ("detection://runcommand_ueba_breach/alerts", "build_alerts")
    ]
    extra = events[0]["extra"]
    assert extra["window"] == ["2026-10-30T00:00:00+00:00", "2026-11-01T00:00:00+00:00"]
    assert (extra["alerts"], extra["new"], extra["updated"], extra["unchanged"]) == (2, 2, 0, 0)
    assert extra["results"] >= 2
    assert extra["data_quality"] == "warnings"
    assert extra["tables"] == {"AzureActivity": "warnings", "BehaviorAnalytics": "warnings"}

    again, _ = run(dag)  # the same interval examined again: a second event, nothing new
    (second,) = asset_events(again.run_id)
    assert (second["extra"]["new"], second["extra"]["unchanged"]) == (0, 2)


@pytest.fixture
def notified(monkeypatch, fakes):
    """The webhook receiver (a fake) configured, as the on-call's channel only."""
    hook = fakes["webhook"]
    monkeypatch.setenv("DETECTION_WEBHOOK_URL", hook.url + hook.path)
    monkeypatch.setenv("DETECTION_WEBHOOK_SECRET", hook.secret)
    monkeypatch.setenv("DETECTION_HTTP_ATTEMPTS", "2")
    monkeypatch.setenv("DETECTION_HTTP_BACKOFF", "0.01")
    return hook


def test_a_failed_run_notifies_the_webhook_with_run_id_and_reason_and_no_secret(
    dag, source, detection_home, monkeypatch, fakes, notified
):
    jira = fakes["jira"]
    monkeypatch.setenv("DETECTION_DESTINATIONS", "file,jira")
    for key, value in {
        "URL": jira.url,
        "USER": jira.user,
        "TOKEN": jira.password,
        "PROJECT": jira.project,
    }.items():
        monkeypatch.setenv(f"DETECTION_JIRA_{key}", value)
    jira.down()
    dagrun, states = run(dag)
    assert dagrun.state == "failed" and states["deliver"] == "failed"

    (event,) = notified.events  # signed: the fake verified the signature
    message = event["payload"]
    assert message["event"] == "run.failed" and event["delivery_id"].endswith(":run.failed")
    assert message["run"]["run_id"] == dagrun.run_id
    assert message["run"]["task_id"] == "deliver"
    assert message["run"]["data_interval"] == [
        "2026-10-31T00:00:00+00:00",
        "2026-11-01T00:00:00+00:00",
    ]
    assert message["reason"].startswith("deliver: ") and "jira" in message["reason"]
    for secret in (jira.password, notified.secret):
        assert secret not in event["body"]


def test_a_failure_with_no_channel_configured_is_logged_as_not_sent(
    dag, source, detection_home, monkeypatch, tmp_path, capfd, caplog
):
    write_jsonl(tmp_path / "bad", run_command(), [{"TimeGenerated": "2026-10-31T09:30:00Z"}])
    monkeypatch.setenv("DETECTION_SOURCE", str(tmp_path / "bad"))
    dagrun, states = run(dag)
    assert states["validate_behavior_analytics"] == "failed"
    assert "no notification channel configured" in "".join(capfd.readouterr()) + caplog.text


def test_a_run_with_no_data_yet_is_skipped_saying_so_and_notified(
    dag, tmp_path, monkeypatch, detection_home, notified, capfd, caplog
):
    """The source stops before the run's interval [10-31, 11-01) begins: nothing to examine."""
    write_jsonl(
        tmp_path / "old",
        run_command(start="2026-10-30T10:00:00Z"),
        [ueba_row(TimeGenerated="2026-10-30T09:30:00Z")],
    )
    monkeypatch.setenv("DETECTION_SOURCE", str(tmp_path / "old"))
    dagrun, states = run(dag)
    assert dagrun.state == "success"
    assert states.pop("partitions") == "success"  # the source named one partition: itself
    assert set(states.values()) == {"skipped"}, states
    assert asset_events(dagrun.run_id) == [], "a skipped interval is not recorded as examined"
    reason = "no data yet for the interval [2026-10-31T00:00:00+00:00, 2026-11-01T00:00:00+00:00)"
    assert reason in "".join(capfd.readouterr()) + caplog.text  # the task log says why
    (event,) = notified.events
    assert event["payload"]["event"] == "run.skipped" and reason in event["payload"]["reason"]
    assert event["payload"]["run"]["run_id"] == dagrun.run_id
    assert tickets(detection_home) == []


@pytest.mark.parametrize(
    "activity_at, ueba_at",
    [
        ("2026-10-31T10:00:00Z", "2026-10-30T09:30:00Z"),
        ("2026-10-30T10:00:00Z", "2026-10-31T09:30:00Z"),
    ],
    ids=["only AzureActivity has rows in the interval", "only BehaviorAnalytics has"],
)
def test_a_run_is_not_skipped_when_either_table_has_data_in_its_interval(
    dag, tmp_path, monkeypatch, detection_home, activity_at, ueba_at
):
    write_jsonl(tmp_path / "one", run_command(start=activity_at), [ueba_row(TimeGenerated=ueba_at)])
    monkeypatch.setenv("DETECTION_SOURCE", str(tmp_path / "one"))
    dagrun, states = run(dag)
    assert states["extract_azure_activity"] == states["extract_behavior_analytics"] == "success"


def test_an_empty_window_with_data_after_it_fails_it_is_not_a_skip(
    dag, tmp_path, monkeypatch, detection_home
):
    """History with a hole (data resumes later) is an outage, not "no data yet"."""
    write_jsonl(
        tmp_path / "hole",
        run_command(start="2026-11-05T10:00:00Z"),
        [ueba_row(TimeGenerated="2026-11-05T09:30:00Z")],
    )
    monkeypatch.setenv("DETECTION_SOURCE", str(tmp_path / "hole"))
    dagrun, states = run(dag)
    assert dagrun.state == "failed"
    assert states["validate_azure_activity"] == states["validate_behavior_analytics"] == "failed"


# --- issue #12 point 3: workers share only storage ------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "file-url"], ids=["memory://", "file:// URL"])
def test_a_run_stages_and_tickets_through_urls_only(
    dag, source, detection_home, monkeypatch, tmp_path, kind
):
    """Staging, Data Docs and the file destination on a URL (fsspec's memory:// stands in for
    object storage): every path a task hands on is that URL, none is a host-local path, and the
    alerts equal those of the local default."""
    import uuid

    import fsspec
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from include.detection import storage

    base = (
        f"memory://dag-{uuid.uuid4().hex}" if kind == "memory" else (tmp_path / "shared").as_uri()
    )
    monkeypatch.setenv("DETECTION_STAGING", f"{base}/staging")
    monkeypatch.setenv("DETECTION_TICKET_DIR", f"{base}/tickets")
    try:
        dagrun, states = run(dag)
        assert dagrun.state == "success", states
        with create_session() as session:
            values = session.scalars(
                select(XComModel.value).where(XComModel.run_id == dagrun.run_id)
            ).all()
        text = json.dumps(values, default=str)
        assert f"{base}/staging/" in text  # paths in XCom are the staging URL's
        assert str(detection_home) not in text  # and nothing host-local
        assert not (detection_home / "staging").exists()
        staged = storage.walk(f"{base}/staging")
        assert any(p.endswith("result.parquet") for p in staged)
        assert any(p.endswith("data_docs/AzureActivity/index.html") for p in staged)
        with open_store() as store:
            alerts = store.alerts()
        assert sorted(a["correlation_id"] for a in alerts) == ["tp-1", "tp-2"]
        tickets_there = sorted(p.rsplit("/", 1)[-1] for p in storage.walk(f"{base}/tickets"))
        assert tickets_there == sorted(f"{a['id']}.json" for a in alerts)
        assert tickets(detection_home) == []
    finally:
        if kind == "memory":
            fsspec.filesystem("memory").rm(base.removeprefix("memory:/"), recursive=True)
