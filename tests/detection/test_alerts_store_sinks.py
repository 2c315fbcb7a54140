"""Alerts, the store/outbox and the file destination: idempotent, nothing lost, nothing twice."""

import json
import sqlite3

import pytest

from include.detection import sinks
from include.detection.alerts import GROUPINGS, build_alerts, grouping_of, merge_alert
from include.detection.correlation import correlate
from include.detection.errors import DeliveryError, UsageError
from include.detection.rule import load_rule
from include.detection.store import AlertStore, open_store
from tests.factories import RULE, activity, run_command, ueba, ueba_row

W1 = ("2026-10-30T00:00:00Z", "2026-11-01T00:00:00Z")
W2 = ("2026-10-31T00:00:00Z", "2026-11-02T00:00:00Z")


def alerts_for(activity_rows, ueba_rows, window=W1, grouping=None):
    return build_alerts(correlate(activity(activity_rows), ueba(ueba_rows)), RULE, *window,
                        grouping=grouping)


# Two executions by alice (c1 with two UEBA rows in its window, c2 with one) and one by bob.
ACTIVITY = (run_command("c1") + run_command("c2", start="2026-10-31T16:00:00Z")
            + run_command("c3", Caller="bob@fabrikam.com", CallerIpAddress="10.9.9.9"))
UEBA = [ueba_row(), ueba_row(TimeGenerated="2026-10-31T09:45:00Z", SourceIPLocation="France"),
        ueba_row(TimeGenerated="2026-10-31T15:30:00Z", ActionType="Add member to role"),
        ueba_row(UserPrincipalName="bob@fabrikam.com", SourceIPLocation="Brazil")]


def test_one_alert_per_execution_with_all_its_ueba_evidence():
    built = alerts_for(run_command("c1") + run_command("c2", start="2026-10-31T10:30:00Z"),
                       [ueba_row(), ueba_row(TimeGenerated="2026-10-31T09:45:00Z")])
    assert len(built) == 2
    assert all(len(a["evidence"]) == 2 for a in built)
    assert {a["correlation_id"] for a in built} == {"c1", "c2"}


def test_alert_id_is_stable_across_overlapping_windows_and_depends_on_the_execution():
    a1 = alerts_for(run_command("c1"), [ueba_row()], W1)
    a2 = alerts_for(run_command("c1"), [ueba_row()], W2)
    other = alerts_for(run_command("c2"), [ueba_row()], W1)
    assert a1[0]["id"] == a2[0]["id"] != other[0]["id"]


def test_alert_carries_rule_metadata_entities_and_details():
    alert = alerts_for(run_command("c1"), [ueba_row()])[0]
    assert alert["severity"] == "High" and alert["rule_id"] == RULE.id
    assert alert["tactics"] == ["LateralMovement", "CredentialAccess"]
    assert alert["techniques"] == ["T1570", "T1212"]
    entities = {e["type"]: e for e in alert["entities"]}
    assert entities["Account"] == {"type": "Account", "Name": "alice", "UPNSuffix": "contoso.com"}
    assert entities["IP"]["Address"] == "10.0.0.1"
    assert entities["AzureResource"]["SubscriptionId"] == "sub-1"
    assert entities["AzureResource"]["ResourceId"].endswith("/virtualMachines/vm-1")
    assert "vm-1" in alert["title"] and "alice@contoso.com" in alert["title"]
    assert alert["window"] == {"start": W1[0], "end": W1[1]}


def test_no_results_no_alerts():
    assert alerts_for(run_command("c1"), [ueba_row(EventSource="AzureAD")]) == []


@pytest.fixture
def store(tmp_path):
    with AlertStore(str(tmp_path / "alerts.db")) as s:
        yield s


def test_upsert_is_idempotent_and_merges_new_evidence(store):
    first = alerts_for(run_command("c1"), [ueba_row()])
    assert store.upsert(first) == {"new": 1, "updated": 0, "unchanged": 0}
    assert store.upsert(first) == {"new": 0, "updated": 0, "unchanged": 1}
    more = alerts_for(run_command("c1"), [ueba_row(), ueba_row(TimeGenerated="2026-10-31T09:50:00Z")], W2)
    assert store.upsert(more) == {"new": 0, "updated": 1, "unchanged": 0}
    (alert,) = store.alerts()
    assert len(alert["evidence"]) == 2 and alert["revision"] == 2


def test_file_delivery_once_per_revision_and_update_reuses_the_ticket(store, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTION_TICKET_DIR", str(tmp_path / "tickets"))
    store.upsert(alerts_for(run_command("c1"), [ueba_row()]))
    assert sinks.deliver_pending(store, ["file"]) == {"file": {"delivered": 1, "failed": 0}}
    assert sinks.deliver_pending(store, ["file"]) == {"file": {"delivered": 0, "failed": 0}}
    store.upsert(alerts_for(run_command("c1"), [ueba_row(), ueba_row(SourceIPLocation="FR")]))
    assert sinks.deliver_pending(store, ["file"])["file"]["delivered"] == 1
    files = list((tmp_path / "tickets").glob("*.json"))
    assert len(files) == 1, "an update rewrites the same ticket"
    assert len(json.loads(files[0].read_text())["evidence"]) == 2


class Flaky:
    name = "flaky"

    def __init__(self):
        self.down, self.calls = True, []

    def deliver(self, alert, ref):
        if self.down:
            raise ConnectionError("destination down")
        self.calls.append(alert["id"])
        return f"T-{len(self.calls)}"


def test_destination_down_keeps_alerts_pending_then_delivers_each_once(store, monkeypatch, tmp_path):
    monkeypatch.setenv("DETECTION_TICKET_DIR", str(tmp_path / "tickets"))
    flaky = Flaky()
    monkeypatch.setitem(sinks.DESTINATIONS, "flaky", lambda: flaky)
    store.upsert(alerts_for(run_command("c1") + run_command("c2", start="2026-10-31T10:20:00Z"),
                            [ueba_row()]))
    with pytest.raises(DeliveryError):
        sinks.deliver_pending(store, ["flaky", "file"])
    assert len(list((tmp_path / "tickets").glob("*.json"))) == 2, "a broken destination blocks no other"
    assert len(store.pending("flaky")) == 2
    flaky.down = False
    assert sinks.deliver_pending(store, ["flaky", "file"]) == {
        "flaky": {"delivered": 2, "failed": 0}, "file": {"delivered": 0, "failed": 0}}
    assert sinks.deliver_pending(store, ["flaky"])["flaky"]["delivered"] == 0
    assert sorted(flaky.calls) == sorted(a["id"] for a in store.alerts())


def test_open_store_uses_the_configured_url(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTION_ALERT_STORE", f"sqlite:///{tmp_path}/x.db")
    with open_store() as s:
        s.upsert(alerts_for(run_command("c1"), [ueba_row()]))
    assert (tmp_path / "x.db").exists()


def test_unknown_destination_is_a_usage_error(store):
    from include.detection.errors import UsageError

    with pytest.raises(UsageError, match="unknown destination 'jira2'"):
        sinks.deliver_pending(store, ["jira2"])


# --- grouping ------------------------------------------------------------------------------------

def test_the_rule_yaml_groups_one_alert_per_execution_by_default():
    assert grouping_of(load_rule()) == "AlertPerExecution"
    assert GROUPINGS == ("AlertPerExecution", "SingleAlert", "AlertPerResult")


@pytest.mark.parametrize("grouping, alerts, rows_per_alert", [
    ("AlertPerExecution", 3, [2, 1, 1]),
    ("SingleAlert", 1, [4]),
    ("AlertPerResult", 4, [1, 1, 1, 1]),
], ids=["per-execution", "single-alert", "per-result"])
def test_grouping_modes_split_the_same_result_rows(grouping, alerts, rows_per_alert):
    built = alerts_for(ACTIVITY, UEBA, grouping=grouping)
    assert len(built) == alerts
    assert sorted(len(a["evidence"]) for a in built) == sorted(rows_per_alert)
    assert sum(len(a["evidence"]) for a in built) == 4, "every result row is in exactly one alert"
    assert len({a["id"] for a in built}) == alerts
    assert all(a["grouping"] == grouping for a in built)


@pytest.mark.parametrize("grouping, same_id_in_next_window", [
    ("AlertPerExecution", True), ("AlertPerResult", True), ("SingleAlert", False),
], ids=["per-execution", "per-result", "single-alert"])
def test_ids_are_deterministic_and_window_free_except_single_alert(grouping, same_id_in_next_window):
    first = {a["id"] for a in alerts_for(ACTIVITY, UEBA, W1, grouping)}
    rerun = {a["id"] for a in alerts_for(ACTIVITY, UEBA, W1, grouping)}
    overlap = {a["id"] for a in alerts_for(ACTIVITY, UEBA, W2, grouping)}
    assert first == rerun, "a re-run of the same window gives the same ids"
    assert (first == overlap) is same_id_in_next_window


def test_single_alert_carries_the_distinct_entities_of_all_rows():
    (alert,) = alerts_for(ACTIVITY, UEBA, grouping="SingleAlert")
    accounts = sorted(e["Name"] for e in alert["entities"] if e["type"] == "Account")
    assert accounts == ["alice", "bob"]
    assert sorted(e["Address"] for e in alert["entities"] if e["type"] == "IP") == ["10.0.0.1", "10.9.9.9"]
    assert alert["correlation_id"] is None and sorted(alert["executions"]) == ["c1", "c2", "c3"]


def test_unknown_grouping_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown event grouping 'AlertPerHour'"):
        alerts_for(ACTIVITY, UEBA, grouping="AlertPerHour")


def test_custom_details_hold_vm_subscription_ip_ueba_action_location_and_insights():
    alert = next(a for a in alerts_for(ACTIVITY, UEBA) if a["correlation_id"] == "c1")
    details = alert["custom_details"]
    assert details["VirtualMachine"] == ["vm-1"] and details["Subscription"] == ["sub-1"]
    assert details["CallerIpAddress"] == ["10.0.0.1"]
    assert details["UEBAActionType"] == ["Sign-in"]
    assert sorted(details["UEBASourceIPLocation"]) == ["France", "Netherlands"]
    assert details["UEBAActivityInsights"][0]["ActionUncommonlyPerformedByUser"] == "True"
    assert details["UEBAUsersInsights"] == [{"IsDormantAccount": "False"}]
    assert alert["rule_version"] == RULE.version and alert["data_quality"] == "passed"
    assert alert["start_time"] == "2026-10-31T10:00:00Z" and alert["end_time"] == "2026-10-31T10:00:02Z"
    assert alert["caller"] == "alice@contoso.com" and alert["resource_id"].endswith("/vm-1")
    assert len(alert["fingerprint"]) == 64


def test_merge_adds_new_evidence_entities_and_details_and_keeps_an_unchanged_alert_as_is():
    (old,) = alerts_for(run_command("c1"), [ueba_row()], W1)
    (new,) = alerts_for(run_command("c1"), [ueba_row(), ueba_row(TimeGenerated="2026-10-31T09:50:00Z",
                                                                  SourceIPLocation="Peru")], W2)
    assert merge_alert(old, old) == (old, False)
    merged, changed = merge_alert(old, new)
    assert changed and len(merged["evidence"]) == 2 and merged["fingerprint"] != old["fingerprint"]
    assert merged["custom_details"]["UEBASourceIPLocation"] == ["Netherlands", "Peru"]
    assert merged["window"] == new["window"] and merged["id"] == old["id"]
    worse, _ = merge_alert(old, {**new, "data_quality": "warnings"})
    assert worse["data_quality"] == "warnings", "the worst data-quality status of its inputs"


# --- the store (SQLite; PostgreSQL and concurrency in test_store_postgres.py) ---------------------

def test_store_lists_tickets_pending_destinations_and_the_delivery_log(store, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTION_TICKET_DIR", str(tmp_path / "tickets"))
    store.upsert(alerts_for(run_command("c1"), [ueba_row()]))
    sinks.deliver_pending(store, ["file"])
    (alert,) = store.alerts(["file", "jira"])
    assert [(t["destination"], t["ticket"], t["current"]) for t in alert["tickets"]] == [
        ("file", f"{alert['id']}.json", True)]
    assert alert["pending"] == ["jira"]
    assert [e["action"] for e in store.delivery_log(alert["id"])] == ["created"]


def test_failed_delivery_is_recorded_and_cleared_by_the_next_success(store, monkeypatch, tmp_path):
    flaky = Flaky()
    monkeypatch.setitem(sinks.DESTINATIONS, "flaky", lambda: flaky)
    store.upsert(alerts_for(run_command("c1"), [ueba_row()]))
    with pytest.raises(DeliveryError, match="flaky: 1 alert"):
        sinks.deliver_pending(store, ["flaky"])
    (alert,) = store.alerts()
    assert alert["delivery_errors"][0]["error"] == "ConnectionError: destination down"
    assert alert["delivery_errors"][0]["attempts"] == 1 and alert["tickets"] == []
    flaky.down = False
    sinks.deliver_pending(store, ["flaky"])
    (alert,) = store.alerts()
    assert "delivery_errors" not in alert and alert["tickets"][0]["ticket"] == "T-1"


def test_an_outbox_written_by_the_first_store_version_is_carried_over(tmp_path):
    """Alerts delivered before the outbox got claims stay delivered (no second ticket)."""
    path = tmp_path / "old.db"
    (alert,) = alerts_for(run_command("c1"), [ueba_row()])
    with AlertStore(str(path)) as s:
        s.upsert([alert])
    old = sqlite3.connect(path)
    old.executescript("""
        DROP TABLE detection_schema_version; DROP TABLE alert_index; DROP TABLE alert_runs;
        DROP TABLE run_profile; DROP TABLE alert_deliveries;
        CREATE TABLE deliveries (alert_id TEXT NOT NULL, destination TEXT NOT NULL, ticket_ref TEXT,
            revision INTEGER NOT NULL, delivered_at TEXT NOT NULL, PRIMARY KEY (alert_id, destination));""")
    old.execute("INSERT INTO deliveries VALUES (?, 'file', 'old.json', 1, '2026-11-01T00:00:00+00:00')",
                (alert["id"],))
    old.commit()
    old.close()
    with AlertStore(str(path)) as s:  # the first version, unversioned: every migration runs
        assert s.pending_ids("file") == []
        assert s.alerts()[0]["tickets"][0]["ticket"] == "old.json"
        assert s.search({"ticket": "delivered"}, destinations=["file"])[0] == 1
