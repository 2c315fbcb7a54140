"""The alert side of the CLI end to end: `run` over overlapping windows and re-runs against every
destination (real HTTP fakes, SQLite and PostgreSQL stores), `alerts` list / show / redeliver,
and exit code 4 while a destination is down."""

import json

import pytest

from include.detection import cli
from tests.factories import run_command, ueba_row
from tests.fakes.fixtures import env_for

ALL = "file,webhook,jira,servicenow"
# Three executions: "old" only in the window ending 11-01, "new" only in the one ending 11-02,
# "late" (23:30 on 10-31) in both, with one more UEBA row (00:15 on 11-01) only the second sees.
ACTIVITY = (
    run_command("old", start="2026-10-30T05:00:00Z")
    + run_command("late", start="2026-10-31T23:30:00Z")
    + run_command("new", start="2026-11-01T10:00:00Z")
)
UEBA = [
    ueba_row(TimeGenerated="2026-10-30T04:00:00Z"),
    ueba_row(TimeGenerated="2026-10-31T22:00:00Z"),
    ueba_row(TimeGenerated="2026-11-01T00:15:00Z", SourceIPLocation="Iceland"),
    ueba_row(TimeGenerated="2026-11-01T09:30:00Z"),
]


@pytest.fixture
def source(tmp_path):
    folder = tmp_path / "source"
    folder.mkdir()
    for name, rows in (("AzureActivity", ACTIVITY), ("BehaviorAnalytics", UEBA)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture
def configured(detection_home, fakes, monkeypatch, store_url):
    """Every CLI command below uses the store DETECTION_ALERT_STORE names and all destinations."""
    for key, value in env_for(fakes).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DETECTION_ALERT_STORE", store_url)
    monkeypatch.setenv("DETECTION_DESTINATIONS", ALL)
    return fakes


def run(source, end, capsys):
    code = cli.main(["run", "--source", str(source), "--end", end])
    return code, capsys.readouterr().err


def listed(capsys):
    assert cli.main(["alerts"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_overlapping_windows_and_a_rerun_give_one_ticket_per_alert_per_destination(
    configured, source, detection_home, capsys
):
    for end in ("2026-11-01", "2026-11-02", "2026-11-01"):
        code, err = run(source, end, capsys)
        assert code == 0, err
    alerts = {a["correlation_id"]: a for a in listed(capsys)}
    assert sorted(alerts) == ["late", "new", "old"]
    assert len({a["id"] for a in alerts.values()}) == 3
    assert len(alerts["late"]["evidence"]) == 2 and alerts["late"]["revision"] == 2, (
        "the second window's new UEBA row updated the alert"
    )
    for alert in alerts.values():
        assert sorted(t["destination"] for t in alert["tickets"]) == sorted(ALL.split(","))
        assert all(t["current"] for t in alert["tickets"]) and alert["pending"] == []

    fakes = configured
    assert len(fakes["jira"].issues) == 3 and len(fakes["servicenow"].incidents) == 3
    assert (
        len(fakes["webhook"].tickets) == 3
        and len(list((detection_home / "tickets").glob("*.json"))) == 3
    )
    late_issue = fakes["jira"].by_label(f"detection-alert-{alerts['late']['id']}")
    assert len(late_issue) == 1 and len(late_issue[0]["comments"]) == 1, (
        "updated once, not re-created"
    )
    assert sorted(d["event"] for d in fakes["webhook"].deliveries) == ["alert.created"] * 3 + [
        "alert.updated"
    ]


def test_run_exits_4_while_a_destination_is_down_then_redeliver_sends_each_alert_once(
    configured, source, capsys
):
    configured["jira"].down()
    code, err = run(source, "2026-11-01", capsys)
    assert code == 4 and "jira: 2 alert(s) pending" in err
    alerts = listed(capsys)
    assert all(a["pending"] == ["jira"] for a in alerts)
    assert all(
        sorted(t["destination"] for t in a["tickets"]) == ["file", "servicenow", "webhook"]
        for a in alerts
    )
    errors = [e for a in alerts for e in a.get("delivery_errors", [])]
    assert [(e["destination"], e["attempts"]) for e in errors] == [("jira", 1)], (
        "jira looked down after the first alert: the second was left pending untried"
    )

    configured["jira"].up()
    assert cli.main(["alerts", "redeliver", "--destination", "jira"]) == 0
    assert json.loads(capsys.readouterr().out) == {"jira": {"delivered": 2, "failed": 0}}
    assert cli.main(["alerts", "redeliver"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        n: {"delivered": 0, "failed": 0} for n in ALL.split(",")
    }
    assert len(configured["jira"].issues) == 2
    assert all(a["pending"] == [] and "delivery_errors" not in a for a in listed(capsys))


def test_alerts_show_and_forced_redelivery_of_one_alert_update_its_ticket(
    configured, source, capsys
):
    assert run(source, "2026-11-01", capsys)[0] == 0
    alert = listed(capsys)[0]
    assert cli.main(["alerts", "show", alert["id"]]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == alert["id"] and len(shown["delivery_log"]) == 4
    assert {
        "title",
        "description",
        "severity",
        "tactics",
        "techniques",
        "entities",
        "custom_details",
        "evidence",
        "window",
        "rule_version",
        "data_quality",
        "fingerprint",
    } <= shown.keys()

    assert (
        cli.main(["alerts", "redeliver", alert["id"], "--destination", "servicenow", "--force"])
        == 0
    )
    assert json.loads(capsys.readouterr().out) == {"servicenow": {"delivered": 1, "failed": 0}}
    (incident,) = configured["servicenow"].by_correlation(alert["id"])
    assert len(incident["work_notes_history"]) == 1 and len(configured["servicenow"].incidents) == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["alerts", "show", "no-such-id"], "no alert with id 'no-such-id'"),
        (["alerts", "show"], "needs an alert id"),
        (["alerts", "redeliver", "--destination", "pagerduty"], "unknown destination 'pagerduty'"),
        (["alerts", "redeliver", "no-such-id"], "no alert with id 'no-such-id'"),
    ],
    ids=[
        "show-unknown-id",
        "show-without-id",
        "redeliver-unknown-destination",
        "redeliver-unknown-id",
    ],
)
def test_alerts_usage_errors_exit_2(argv, message, detection_home, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_alerts_table_shows_tickets_and_pending_destinations(configured, source, capsys):
    configured["servicenow"].down()
    run(source, "2026-11-01", capsys)
    assert cli.main(["alerts", "--format", "table"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["id", "severity", "start", "rows"] and len(lines) == 3
    assert all("file,jira,webhook (pending: servicenow)" in line for line in lines[1:])
