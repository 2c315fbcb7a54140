"""Alerts, the store/outbox and the file destination: idempotent, nothing lost, nothing twice."""

import json

import pytest

from include.detection import sinks
from include.detection.alerts import build_alerts
from include.detection.correlation import correlate
from include.detection.errors import DeliveryError
from include.detection.store import AlertStore, open_store
from tests.factories import RULE, activity, run_command, ueba, ueba_row

W1 = ("2026-10-30T00:00:00Z", "2026-11-01T00:00:00Z")
W2 = ("2026-10-31T00:00:00Z", "2026-11-02T00:00:00Z")


def alerts_for(activity_rows, ueba_rows, window=W1):
    return build_alerts(correlate(activity(activity_rows), ueba(ueba_rows)), RULE, *window)


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
