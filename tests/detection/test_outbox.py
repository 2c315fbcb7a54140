"""The outbox: each pending alert delivered once per revision, outages, unknown destinations."""

import json

import pytest

from include.detection import destinations
from include.detection.errors import DeliveryError, UsageError
from include.detection.store import AlertStore
from tests.detection.alert_cases import alerts_for
from tests.factories import run_command, ueba_row


@pytest.fixture
def store(tmp_path):
    with AlertStore(str(tmp_path / "alerts.db")) as s:
        yield s


def test_file_delivery_once_per_revision_and_update_reuses_the_ticket(store, tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTION_TICKET_DIR", str(tmp_path / "tickets"))
    store.upsert(alerts_for(run_command("c1"), [ueba_row()]))
    assert destinations.deliver_pending(store, ["file"]) == {"file": {"delivered": 1, "failed": 0}}
    assert destinations.deliver_pending(store, ["file"]) == {"file": {"delivered": 0, "failed": 0}}
    store.upsert(alerts_for(run_command("c1"), [ueba_row(), ueba_row(SourceIPLocation="FR")]))
    assert destinations.deliver_pending(store, ["file"])["file"]["delivered"] == 1
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


def test_destination_down_keeps_alerts_pending_then_delivers_each_once(
    store, monkeypatch, tmp_path
):
    monkeypatch.setenv("DETECTION_TICKET_DIR", str(tmp_path / "tickets"))
    flaky = Flaky()
    monkeypatch.setitem(destinations.DESTINATIONS, "flaky", lambda: flaky)
    store.upsert(
        alerts_for(
            run_command("c1") + run_command("c2", start="2026-10-31T10:20:00Z"), [ueba_row()]
        )
    )
    with pytest.raises(DeliveryError):
        destinations.deliver_pending(store, ["flaky", "file"])
    assert len(list((tmp_path / "tickets").glob("*.json"))) == 2, (
        "a broken destination blocks no other"
    )
    assert len(store.pending("flaky")) == 2
    flaky.down = False
    assert destinations.deliver_pending(store, ["flaky", "file"]) == {
        "flaky": {"delivered": 2, "failed": 0},
        "file": {"delivered": 0, "failed": 0},
    }
    assert destinations.deliver_pending(store, ["flaky"])["flaky"]["delivered"] == 0
    assert sorted(flaky.calls) == sorted(a["id"] for a in store.alerts())


def test_unknown_destination_is_a_usage_error(store):

    with pytest.raises(UsageError, match="unknown destination 'jira2'"):
        destinations.deliver_pending(store, ["jira2"])


def test_failed_delivery_is_recorded_and_cleared_by_the_next_success(store, monkeypatch, tmp_path):
    flaky = Flaky()
    monkeypatch.setitem(destinations.DESTINATIONS, "flaky", lambda: flaky)
    store.upsert(alerts_for(run_command("c1"), [ueba_row()]))
    with pytest.raises(DeliveryError, match="flaky: 1 alert"):
        destinations.deliver_pending(store, ["flaky"])
    (alert,) = store.alerts()
    assert alert["delivery_errors"][0]["error"] == "ConnectionError: destination down"
    assert alert["delivery_errors"][0]["attempts"] == 1 and alert["tickets"] == []
    flaky.down = False
    destinations.deliver_pending(store, ["flaky"])
    (alert,) = store.alerts()
    assert "delivery_errors" not in alert and alert["tickets"][0]["ticket"] == "T-1"
