"""Destinations against real HTTP servers on 127.0.0.1 (tests/fakes) that speak the subset of the
Jira, ServiceNow and webhook APIs used: create once, update instead of duplicating, retries on
timeouts / 5xx / 429 (Retry-After honoured), outages leave alerts pending until delivered once,
and credentials never show up anywhere."""

import json
import logging
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime as http_date

import pytest

from include.detection import cli, destinations
from include.detection.alerts import build_alerts
from include.detection.correlation import correlate
from include.detection.destinations.base import retry_after_seconds
from include.detection.errors import DeliveryError
from include.detection.store import AlertStore, open_store
from tests.factories import RULE, activity, run_command, ueba, ueba_row
from tests.fakes.fixtures import FAST_HTTP, env_for, settings_for

HTTP = ["jira", "servicenow", "webhook"]
ALL = ["file", *HTTP]
W1 = ("2026-10-30T00:00:00Z", "2026-11-01T00:00:00Z")


def executions(n, ueba_rows=None, window=W1):
    acts = [
        row
        for i in range(n)
        for row in run_command(f"exec-{i}", start=f"2026-10-31T10:{i:02d}:00Z")
    ]
    return build_alerts(correlate(activity(acts), ueba(ueba_rows or [ueba_row()])), RULE, *window)


def more_evidence(n):
    return executions(
        n, [ueba_row(), ueba_row(TimeGenerated="2026-10-31T09:40:00Z", SourceIPLocation="Chile")]
    )


@pytest.fixture
def store(tmp_path):
    with AlertStore(str(tmp_path / "alerts.db")) as s:
        yield s


def tickets(name, fakes, tmp_path) -> dict[str, list[str]]:
    """alert id -> ticket references the destination holds for it."""
    out: dict[str, list[str]] = {}
    if name == "file":
        for f in (tmp_path / "tickets").glob("*.json"):
            out.setdefault(json.loads(f.read_text())["id"], []).append(f.name)
    elif name == "jira":
        for issue in fakes["jira"].issues.values():
            ids = [
                label.removeprefix("detection-alert-")
                for label in issue["labels"]
                if label.startswith("detection-alert-")
            ]
            out.setdefault(ids[0], []).append(issue["key"])
    elif name == "servicenow":
        for inc in fakes["servicenow"].incidents.values():
            out.setdefault(inc["correlation_id"], []).append(inc["number"])
    else:
        for alert_id, ticket in fakes["webhook"].tickets.items():
            out.setdefault(alert_id, []).append(ticket)
    return out


def deliver(store, names, fakes, tmp_path, **http):
    return destinations.deliver_pending(
        store, names, settings=settings_for(fakes, tmp_path, **http)
    )


# --- each destination: one ticket, then updates of it ---------------------------------------------


@pytest.mark.parametrize("name", ALL, ids=ALL)
def test_one_ticket_per_alert_then_an_update_of_the_same_ticket(name, store, fakes, tmp_path):
    first = executions(2)
    store.upsert(first)
    assert deliver(store, [name], fakes, tmp_path) == {name: {"delivered": 2, "failed": 0}}
    before = {k: sorted(v) for k, v in tickets(name, fakes, tmp_path).items()}
    assert sorted(before) == sorted(a["id"] for a in first) and all(
        len(v) == 1 for v in before.values()
    )

    assert deliver(store, [name], fakes, tmp_path)[name]["delivered"] == 0, "nothing twice"
    store.upsert(more_evidence(1))  # new evidence for exec-0 only
    assert deliver(store, [name], fakes, tmp_path)[name]["delivered"] == 1
    assert {k: sorted(v) for k, v in tickets(name, fakes, tmp_path).items()} == before
    updated = store.get(first[0]["id"])
    (ticket,) = [t for t in updated["tickets"] if t["destination"] == name]
    assert ticket["revision"] == 2 and ticket["ticket"] == before[first[0]["id"]][0]
    assert [e["action"] for e in store.delivery_log(first[0]["id"])] == ["created", "updated"]


def test_jira_issue_has_summary_description_labels_property_and_update_comment(
    store, fakes, tmp_path
):
    jira = fakes["jira"]
    store.upsert(executions(1))
    deliver(store, ["jira"], fakes, tmp_path)
    (issue,) = jira.issues.values()
    alert = store.alerts()[0]
    assert issue["fields"]["summary"] == alert["title"]
    assert issue["fields"]["issuetype"] == {"name": "Task"} and issue["fields"]["project"] == {
        "key": "SEC"
    }
    assert f"detection-alert-{alert['id']}" in issue["labels"]
    assert issue["properties"]["detection.alert"]["id"] == alert["id"]
    text = issue["fields"]["description"]
    assert "Account: Name=alice, UPNSuffix=contoso.com" in text and "Evidence (1 rows)" in text
    assert "T1570" in text and alert["id"] in text


def test_servicenow_incident_has_correlation_id_impact_urgency_and_a_work_note_on_update(
    store, fakes, tmp_path
):
    servicenow = fakes["servicenow"]
    store.upsert(executions(1))
    deliver(store, ["servicenow"], fakes, tmp_path)
    store.upsert(more_evidence(1))
    deliver(store, ["servicenow"], fakes, tmp_path)
    (inc,) = servicenow.incidents.values()
    alert = store.alerts()[0]
    assert inc["correlation_id"] == alert["id"] and inc["short_description"] == alert["title"]
    assert (inc["impact"], inc["urgency"]) == ("1", "1"), "severity High"
    assert "Evidence (2 rows)" in inc["description"]
    assert inc["work_notes_history"] == ["Alert updated to revision 2: 2 evidence rows."]


def test_webhook_posts_signed_json_with_an_idempotency_key(store, fakes, tmp_path):
    webhook = fakes["webhook"]
    store.upsert(executions(1))
    deliver(store, ["webhook"], fakes, tmp_path)
    (sent,) = webhook.deliveries
    alert = store.alerts()[0]
    assert sent["event"] == "alert.created" and sent["delivery_id"] == f"{alert['id']}:1"
    assert sent["alert"]["evidence"] == alert["evidence"]
    (req,) = webhook.requests
    assert req.headers["x-detection-signature-256"].startswith("sha256=")
    assert req.headers["idempotency-key"] == f"{alert['id']}:1"


def test_webhook_with_a_wrong_secret_is_refused_and_not_retried(store, fakes):
    webhook = fakes["webhook"]
    store.upsert(executions(1))
    settings = settings_for(fakes)
    settings["webhook"]["secret"] = "not-the-right-secret"
    with pytest.raises(DeliveryError, match="HTTP 401"):
        destinations.deliver_pending(store, ["webhook"], settings=settings)
    assert (
        webhook.count() == 1 and webhook.deliveries == [] and len(store.pending_ids("webhook")) == 1
    )


@pytest.mark.parametrize("name", ["jira", "servicenow"], ids=["jira", "servicenow"])
def test_search_before_create_adopts_a_ticket_the_store_does_not_know(name, store, fakes, tmp_path):
    """A worker that created the ticket and died before recording it: no second ticket."""
    (alert,) = executions(1)
    store.upsert([alert])
    if name == "jira":
        fakes["jira"].issues["SEC-77"] = {
            "id": "77",
            "key": "SEC-77",
            "fields": {"summary": "x"},
            "labels": [f"detection-alert-{alert['id']}"],
            "comments": [],
            "properties": {},
            "created": 0,
        }
        existing = "SEC-77"
    else:
        fakes["servicenow"].incidents["abc"] = {
            "sys_id": "abc",
            "number": "INC0000077",
            "correlation_id": alert["id"],
            "sys_created_on": 0,
            "work_notes_history": [],
        }
        existing = "INC0000077"
    deliver(store, [name], fakes, tmp_path)
    assert tickets(name, fakes, tmp_path) == {alert["id"]: [existing]}
    assert store.get(alert["id"])["tickets"][0]["ticket"] == existing
    assert [e["action"] for e in store.delivery_log(alert["id"])] == ["updated"]


def test_jira_issue_deleted_in_jira_is_created_again(store, fakes, tmp_path):
    jira = fakes["jira"]
    store.upsert(executions(1))
    deliver(store, ["jira"], fakes, tmp_path)
    jira.delete("SEC-1")
    store.upsert(more_evidence(1))
    deliver(store, ["jira"], fakes, tmp_path)
    assert list(jira.issues) == ["SEC-2"] and store.alerts()[0]["tickets"][0]["ticket"] == "SEC-2"


# --- transient failures are retried ---------------------------------------------------------------

FAULTS = {
    "http-500": dict(times=1, status=500),
    "http-503-twice": dict(times=2, status=503),
    "http-429-retry-after-1s": dict(times=1, status=429, headers={"Retry-After": "1"}),
    "timeout": dict(times=1, delay=0.8),  # client timeout is 0.5 s
    "timeout-after-the-write-happened": dict(times=1, delay=0.8, process=True),
}
WRITES = {
    "jira": ("POST", "/rest/api/2/issue"),
    "servicenow": ("POST", "/api/now/table/incident"),
    "webhook": ("POST", "/hooks/detections"),
}


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
@pytest.mark.parametrize("name", HTTP, ids=HTTP)
def test_transient_failures_are_retried_and_deliver_exactly_one_ticket(
    name, fault, store, fakes, tmp_path
):
    alerts = executions(2)
    store.upsert(alerts)
    fake = fakes[name]
    method, path = WRITES[name]
    fake.fail(**FAULTS[fault], method=method, path=path)
    started = time.monotonic()
    assert deliver(store, [name], fakes, tmp_path)[name] == {"delivered": 2, "failed": 0}
    fake.wait_idle()  # a timed-out request may still be answered: count what it did too
    held = tickets(name, fakes, tmp_path)
    assert sorted(held) == sorted(a["id"] for a in alerts)
    assert all(len(refs) == 1 for refs in held.values()), "no duplicate ticket"
    writes = [r for r in fake.requests if r.method == method and r.path == path]
    if fault == "timeout-after-the-write-happened" and name != "webhook":
        # the retry searched first, found what the timed-out create made, and updated it
        assert len(writes) == 2, "no blind second create"
        assert fake.count("PUT" if name == "jira" else "PATCH") >= 1
    else:
        failures = FAULTS[fault]["times"]
        assert len(writes) == 2 + failures, "each failed write was retried, nothing more"
    if "retry-after" in fault:
        assert writes[1].at - writes[0].at >= 0.95, "Retry-After: 1 was honoured"
    if fault == "timeout-after-the-write-happened" and name == "webhook":
        # at least once: the receiver saw the first delivery twice, under the same idempotency key
        ids = [d["delivery_id"] for d in fakes["webhook"].deliveries]
        assert len(ids) == 3 and len(set(ids)) == 2
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    "value, expected",
    [
        ("3", 3.0),
        ("0", 0.0),
        ("soon", None),
        (None, None),
    ],
    ids=["seconds", "zero", "garbage", "absent"],
)
def test_retry_after_header_forms(value, expected):
    assert retry_after_seconds(value) == expected


def test_retry_after_as_an_http_date():
    when = http_date(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 <= retry_after_seconds(when) <= 31


def test_a_retry_after_longer_than_the_longest_wait_leaves_the_alert_for_the_next_attempt(
    store, fakes, tmp_path
):
    store.upsert(executions(2))
    fakes["jira"].fail(times=1, status=429, headers={"Retry-After": "120"}, method="GET")
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="jira: 2 alert"):
        deliver(store, ["jira"], fakes, tmp_path)
    assert time.monotonic() - started < 2, "did not sleep 120 s, nor hammer the server"
    assert fakes["jira"].count() == 1 and fakes["jira"].issues == {}
    assert deliver(store, ["jira"], fakes, tmp_path)["jira"]["delivered"] == 2


def test_a_refused_alert_stays_pending_and_does_not_stop_the_next_one(store, fakes, tmp_path):
    alerts = executions(2)
    store.upsert(alerts)
    fakes["jira"].fail(times=1, status=400, method="POST", path="/rest/api/2/issue")
    with pytest.raises(DeliveryError, match="HTTP 400"):
        deliver(store, ["jira"], fakes, tmp_path)
    assert fakes["jira"].count("POST", "/rest/api/2/issue") == 2, "a 4xx is not retried"
    first = min(a["id"] for a in alerts)  # same first_seen: tried in id order
    assert store.pending_ids("jira") == [first] and len(fakes["jira"].issues) == 1
    assert deliver(store, ["jira"], fakes, tmp_path)["jira"]["delivered"] == 1
    assert len(fakes["jira"].issues) == 2


# --- outages --------------------------------------------------------------------------------------


def test_outage_then_recovery_delivers_every_pending_alert_once(store_url, fakes, tmp_path):
    with AlertStore(store_url) as store:
        alerts = executions(5)
        store.upsert(alerts)
        for fake in fakes.values():
            fake.down()
        with pytest.raises(DeliveryError) as err:
            deliver(store, ALL, fakes, tmp_path)
        assert err.value.report["file"] == {"delivered": 5, "failed": 0}, "file is not blocked"
        for name in HTTP:
            assert err.value.report[name]["failed"] == 5
            assert fakes[name].count() == FAST_HTTP["attempts"], f"{name}: down, not hammered"
            assert len(store.pending_ids(name)) == 5
        for fake in fakes.values():
            fake.up()
        assert deliver(store, ALL, fakes, tmp_path) == {
            "file": {"delivered": 0, "failed": 0},
            **{n: {"delivered": 5, "failed": 0} for n in HTTP},
        }
        assert deliver(store, ALL, fakes, tmp_path) == {
            n: {"delivered": 0, "failed": 0} for n in ALL
        }
        for name in ALL:
            held = tickets(name, fakes, tmp_path)
            assert sorted(held) == sorted(a["id"] for a in alerts) and all(
                len(v) == 1 for v in held.values()
            )
        log = store.delivery_log()
        assert len(log) == 20 and {e["action"] for e in log} == {"created"}


def test_a_misconfigured_destination_fails_visibly_and_blocks_no_other(store, fakes, tmp_path):
    store.upsert(executions(1))
    settings = settings_for(fakes, tmp_path)
    del settings["jira"]["token"]
    with pytest.raises(DeliveryError, match="'jira' is not configured: missing token") as err:
        destinations.deliver_pending(store, ALL, settings=settings)
    assert {n: r["delivered"] for n, r in err.value.report.items()} == {
        "file": 1,
        "jira": 0,
        "servicenow": 1,
        "webhook": 1,
    }


# --- configuration from Airflow connections -------------------------------------------------------


def test_settings_from_an_airflow_conn_uri_in_the_environment(store, jira, monkeypatch):
    host = jira.url.removeprefix("http://")
    monkeypatch.setenv(
        "AIRFLOW_CONN_DETECTION_JIRA",
        f"http://{jira.user.replace('@', '%40')}:{jira.password}@{host}/?project=SEC&attempts=1",
    )
    store.upsert(executions(1))
    assert destinations.deliver_pending(store, ["jira"])["jira"]["delivered"] == 1
    assert len(jira.issues) == 1


def test_settings_from_a_connection_object_passed_by_the_airflow_layer(
    store, servicenow, monkeypatch
):
    class Connection:  # what airflow.sdk.Connection.get returns, read by attribute
        conn_id, conn_type, host, port = "detection_servicenow", "http", servicenow.url, None
        login, password, schema, extra_dejson = servicenow.user, servicenow.password, "", {}

    for var in ("DETECTION_SERVICENOW_URL", "AIRFLOW_CONN_DETECTION_SERVICENOW"):
        monkeypatch.delenv(var, raising=False)
    store.upsert(executions(1))
    report = destinations.deliver_pending(
        store, ["servicenow"], connections={"servicenow": Connection()}
    )
    assert report["servicenow"]["delivered"] == 1 and len(servicenow.incidents) == 1


# --- secrets --------------------------------------------------------------------------------------


def test_credentials_never_reach_logs_errors_stored_alerts_or_cli_output(
    fakes, tmp_path, monkeypatch, caplog, capsys, detection_home
):
    secrets = {
        "jira": fakes["jira"].password,
        "servicenow": fakes["servicenow"].password,
        "webhook": fakes["webhook"].secret,
        "webhook URL path": fakes["webhook"].path.strip("/"),
    }  # a capability URL
    monkeypatch.setenv(
        "AIRFLOW_CONN_DETECTION_JIRA",
        json.dumps(
            {
                "conn_type": "http",
                "host": fakes["jira"].url,
                "login": fakes["jira"].user,
                "password": secrets["jira"],
                "extra": {"project": "SEC"},
            }
        ),
    )
    for key, value in env_for(fakes).items():
        if not key.startswith("DETECTION_JIRA_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("DETECTION_DESTINATIONS", "jira,servicenow,webhook")
    # Servers that echo the credentials back in their error bodies.
    fakes["jira"].down(status=500, body=json.dumps({"error": f"token {secrets['jira']} rejected"}))
    fakes["servicenow"].down(
        status=500, body=f"user:password {fakes['servicenow'].user}:{secrets['servicenow']} invalid"
    )
    fakes["webhook"].down(status=502, body=f"secret={secrets['webhook']}")
    with open_store() as store:
        store.upsert(executions(1))
    caplog.set_level(logging.DEBUG)
    assert cli.main(["alerts", "redeliver"]) == 4
    assert cli.main(["alerts"]) == 0
    out = capsys.readouterr()
    with open_store() as store:
        stored = json.dumps(store.alerts()) + json.dumps(store.delivery_log())
    assert "injected" not in out.err
    haystack = {"cli output": out.out + out.err, "logs": caplog.text, "store": stored}
    assert all(n in stored for n in ("jira", "servicenow", "webhook")), "errors were recorded"
    for where, text in haystack.items():
        for name, secret in secrets.items():
            assert secret not in text, f"{name} secret in {where}"
    assert "***" in stored, "the echoed secrets were masked, not dropped silently"


# --- the file destination on shared storage (issue #12 point 3) -----------------------------------


@pytest.fixture
def memory_tickets():
    import uuid

    import fsspec

    root = f"memory-tickets-{uuid.uuid4().hex}"
    yield f"memory://{root}/tickets"
    memory = fsspec.filesystem("memory")
    if memory.exists(f"/{root}"):
        memory.rm(f"/{root}", recursive=True)


def test_file_tickets_on_object_storage_one_per_alert_then_updated_in_place(
    store, memory_tickets, tmp_path
):
    from include.detection import storage

    settings = {"file": {"folder": memory_tickets}}
    first = executions(2)
    store.upsert(first)
    assert destinations.deliver_pending(store, ["file"], settings=settings) == {
        "file": {"delivered": 2, "failed": 0}
    }
    names = sorted(f"{a['id']}.json" for a in first)
    assert storage.walk(memory_tickets) == names
    store.upsert(more_evidence(1))
    assert (
        destinations.deliver_pending(store, ["file"], settings=settings)["file"]["delivered"] == 1
    )
    assert storage.walk(memory_tickets) == names, "updated in place, no second ticket, no temp key"
    ticket = json.loads(storage.read_text(f"{memory_tickets}/{first[0]['id']}.json"))
    assert ticket["revision"] == 2
    assert [e["action"] for e in store.delivery_log(first[0]["id"])] == ["created", "updated"]
    assert not (tmp_path / "tickets").exists(), "nothing on local disk"


@pytest.mark.parametrize(
    "ref",
    ["../escape.json", "sub/escape.json", "..", ".hidden.json"],
    ids=["parent folder", "sub-folder", "dot-dot", "dot-name"],
)
def test_file_tickets_on_object_storage_refuse_a_ticket_reference_that_is_a_path(
    ref, memory_tickets
):
    from include.detection import storage
    from include.detection.destinations import FileTickets, PermanentError

    (alert,) = executions(1)
    with pytest.raises(PermanentError, match="refusing ticket reference"):
        FileTickets(folder=memory_tickets).deliver(alert, ref)
    assert storage.walk(memory_tickets.rpartition("/")[0]) == []
