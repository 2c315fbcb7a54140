"""The alert store on SQLite (PostgreSQL and concurrency: test_store_postgres.py)."""

import sqlite3

import pytest

from include.detection import destinations
from include.detection.store import AlertStore, open_store
from tests.detection.alert_cases import W2, alerts_for
from tests.factories import run_command, ueba_row


@pytest.fixture
def store(tmp_path):
    with AlertStore(str(tmp_path / "alerts.db")) as s:
        yield s


def test_upsert_is_idempotent_and_merges_new_evidence(store):
    first = alerts_for(run_command("c1"), [ueba_row()])
    assert store.upsert(first) == {"new": 1, "updated": 0, "unchanged": 0}
    assert store.upsert(first) == {"new": 0, "updated": 0, "unchanged": 1}
    more = alerts_for(
        run_command("c1"), [ueba_row(), ueba_row(TimeGenerated="2026-10-31T09:50:00Z")], W2
    )
    assert store.upsert(more) == {"new": 0, "updated": 1, "unchanged": 0}
    (alert,) = store.alerts()
    assert len(alert["evidence"]) == 2 and alert["revision"] == 2


def test_open_store_uses_the_configured_url(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTION_ALERT_STORE", f"sqlite:///{tmp_path}/x.db")
    with open_store() as s:
        s.upsert(alerts_for(run_command("c1"), [ueba_row()]))
    assert (tmp_path / "x.db").exists()


def test_store_lists_tickets_pending_destinations_and_the_delivery_log(
    store, tmp_path, monkeypatch
):
    monkeypatch.setenv("DETECTION_TICKET_DIR", str(tmp_path / "tickets"))
    store.upsert(alerts_for(run_command("c1"), [ueba_row()]))
    destinations.deliver_pending(store, ["file"])
    (alert,) = store.alerts(["file", "jira"])
    assert [(t["destination"], t["ticket"], t["current"]) for t in alert["tickets"]] == [
        ("file", f"{alert['id']}.json", True)
    ]
    assert alert["pending"] == ["jira"]
    assert [e["action"] for e in store.delivery_log(alert["id"])] == ["created"]


def test_an_outbox_written_by_the_first_store_version_is_carried_over(tmp_path):
    """Alerts delivered before the outbox got claims stay delivered (no second ticket)."""
    path = tmp_path / "old.db"
    (alert,) = alerts_for(run_command("c1"), [ueba_row()])
    with AlertStore(str(path)) as s:
        s.upsert([alert])
    old = sqlite3.connect(path)
    old.executescript(
        "\n"
        "        DROP TABLE detection_schema_version; DROP TABLE alert_index; "
        "DROP TABLE alert_runs;\n"
        "        DROP TABLE run_profile; DROP TABLE alert_deliveries;\n"
        "        CREATE TABLE deliveries (alert_id TEXT NOT NULL, destination TEXT NOT NULL, "
        "ticket_ref TEXT,\n"
        "            revision INTEGER NOT NULL, delivered_at TEXT NOT NULL, "
        "PRIMARY KEY (alert_id, destination));"
    )
    old.execute(
        "INSERT INTO deliveries VALUES (?, 'file', 'old.json', 1, '2026-11-01T00:00:00+00:00')",
        (alert["id"],),
    )
    old.commit()
    old.close()
    with AlertStore(str(path)) as s:  # the first version, unversioned: every migration runs
        assert s.pending_ids("file") == []
        assert s.alerts()[0]["tickets"][0]["ticket"] == "old.json"
        assert s.search({"ticket": "delivered"}, destinations=["file"])[0] == 1
