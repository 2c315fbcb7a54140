"""The alert store on SQLite and on the real PostgreSQL (127.0.0.1:5432, one schema per test):
the same behaviour, the URL / connection-id configuration, and two processes at once."""

import json
import multiprocessing
import re
import time

import pytest

from include.detection import destinations
from include.detection.alerts import build_alerts, fingerprint
from include.detection.correlation import correlate
from include.detection.errors import UsageError
from include.detection.store import AlertStore, open_store
from tests.factories import RULE, activity, run_command, ueba, ueba_row
from tests.fakes.fixtures import FAST_HTTP
from tests.fakes.http import MAX_DELAY

W1 = ("2026-10-30T00:00:00Z", "2026-11-01T00:00:00Z")
W2 = ("2026-10-31T00:00:00Z", "2026-11-02T00:00:00Z")
FORK = multiprocessing.get_context("fork")


def executions(n, ueba_rows, window=W1):
    acts = [
        row
        for i in range(n)
        for row in run_command(f"exec-{i}", start=f"2026-10-31T10:{i:02d}:00Z")
    ]
    return build_alerts(correlate(activity(acts), ueba(ueba_rows)), RULE, *window)


def test_upsert_is_idempotent_and_merges_new_evidence(store_url):
    with AlertStore(store_url) as store:
        first = executions(2, [ueba_row()])
        assert store.upsert(first) == {"new": 2, "updated": 0, "unchanged": 0}
        assert store.upsert(first) == {"new": 0, "updated": 0, "unchanged": 2}
        more = executions(2, [ueba_row(), ueba_row(TimeGenerated="2026-10-31T09:40:00Z")], W2)
        assert store.upsert(more) == {"new": 0, "updated": 2, "unchanged": 0}
        stored = store.alerts()
        assert [len(a["evidence"]) for a in stored] == [2, 2]
        assert [a["revision"] for a in stored] == [2, 2]
        assert {a["id"] for a in stored} == {a["id"] for a in first}


def test_delivery_is_recorded_per_destination_and_a_new_revision_is_pending_again(store_url):
    with AlertStore(store_url) as store:
        (alert,) = executions(1, [ueba_row()])
        store.upsert([alert])
        claim = store.claim(alert["id"], "jira", "w1", 60)
        assert claim.revision == 1 and claim.ticket_ref is None
        store.mark_delivered(
            alert["id"], "jira", "SEC-1", claim.revision, claim.fingerprint, "w1", "created"
        )
        assert store.pending_ids("jira") == [] and store.pending_ids("file") == [alert["id"]]
        store.upsert(executions(1, [ueba_row(), ueba_row(SourceIPLocation="Chile")]))
        claim = store.claim(alert["id"], "jira", "w1", 60)
        assert (claim.revision, claim.ticket_ref) == (2, "SEC-1"), "an update of the same ticket"
        got = store.get(alert["id"], ["jira", "file"])
        assert got["tickets"][0]["destination"] == "jira" and got["pending"] == ["file", "jira"]


def test_a_claimed_alert_is_skipped_until_its_lease_ends(store_url):
    with AlertStore(store_url) as store:
        (alert,) = executions(1, [ueba_row()])
        store.upsert([alert])
        assert store.claim(alert["id"], "jira", "w1", 0.3) is not None
        assert store.claim(alert["id"], "jira", "w2", 60) is None, "held by w1"
        time.sleep(0.4)
        assert store.claim(alert["id"], "jira", "w2", 60) is not None, "w1's lease ran out"
        store.mark_failed(alert["id"], "jira", "boom", "w2")
        assert store.claim(alert["id"], "jira", "w3", 60) is not None, (
            "a failure releases the claim"
        )


def test_an_alert_held_by_a_dead_worker_is_delivered_once_its_lease_ends(
    store_url, jira, monkeypatch
):
    """Issue #9: a claim left by a killed worker blocked delivery for its whole lease (120-500 s)
    and failed the run meanwhile. Now the lease is short and renewed by a live worker's
    heartbeat; a run finding a claim waits for it to end and delivers the alert itself."""
    monkeypatch.setenv("DETECTION_CLAIM_LEASE", "1")
    with AlertStore(store_url) as store:
        (alert,) = executions(1, [ueba_row()])
        store.upsert([alert])
        assert store.claim(alert["id"], "jira", "dead-worker", 1) is not None
        settings = {
            "jira": {
                "url": jira.url,
                "user": jira.user,
                "token": jira.password,
                "project": "SEC",
                **FAST_HTTP,
            }
        }
        report = destinations.deliver_pending(store, ["jira"], settings=settings)
        assert report["jira"] == {"delivered": 1, "failed": 0}
        assert len(jira.issues) == 1 and store.pending_ids("jira") == []


def test_a_live_workers_heartbeat_keeps_its_claim_past_the_lease(store_url, monkeypatch):
    monkeypatch.setenv("DETECTION_CLAIM_LEASE", "1")
    with AlertStore(store_url) as store:
        (alert,) = executions(1, [ueba_row()])
        store.upsert([alert])
        assert store.claim(alert["id"], "jira", "busy-worker", 1) is not None
        with destinations._Heartbeat(store, "busy-worker", 1):
            time.sleep(1.6)
            assert store.claim(alert["id"], "jira", "other", 1) is None, "renewed by the beat"
        time.sleep(1.1)
        assert store.claim(alert["id"], "jira", "other", 1) is not None, "no beat: it ends"


@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "1e9", "soon"])
def test_a_bad_claim_lease_is_a_usage_error(value, monkeypatch):
    monkeypatch.setenv("DETECTION_CLAIM_LEASE", value)
    with pytest.raises(UsageError, match="DETECTION_CLAIM_LEASE"):
        destinations.claim_lease()


def _slow_delivery(url, settings):
    with AlertStore(url) as store:
        destinations.deliver_pending(store, ["jira"], settings={"jira": settings})


def test_a_worker_killed_mid_delivery_leaves_no_duplicate_and_no_stuck_alert(
    store_url, jira, monkeypatch
):
    """SIGKILL while the create is in flight: the next worker takes the alert over once the
    dead worker's lease ends, finds the issue the dead one created by its label, and updates it."""
    monkeypatch.setenv("DETECTION_CLAIM_LEASE", "2")
    with AlertStore(store_url) as store:
        (alert,) = executions(1, [ueba_row()])
        store.upsert([alert])
    jira.fail(times=1, delay=MAX_DELAY, process=True, method="POST", path="/rest/api/2/issue")
    settings = {
        "url": jira.url,
        "user": jira.user,
        "token": jira.password,
        "project": "SEC",
        **FAST_HTTP,
        "timeout": 60,
    }
    victim = FORK.Process(target=_slow_delivery, args=(store_url, settings))
    victim.start()
    deadline = time.monotonic() + 30
    while not jira.issues and time.monotonic() < deadline:  # the create has reached Jira
        time.sleep(0.05)
    victim.kill()
    victim.join(10)
    assert victim.exitcode == -9 and len(jira.issues) == 1
    with AlertStore(store_url) as store:
        report = destinations.deliver_pending(
            store, ["jira"], settings={"jira": {**settings, "timeout": 5}}
        )
        assert report["jira"]["delivered"] == 1
        assert len(jira.issues) == 1, "found by its label and updated, not created twice"
        assert [e["action"] for e in store.delivery_log()] == ["updated"]


def test_the_env_var_names_the_store_for_open_store(pg_url, monkeypatch):
    monkeypatch.setenv("DETECTION_ALERT_STORE", pg_url)
    with open_store() as store:
        assert store.is_postgres
        store.upsert(executions(1, [ueba_row()]))
    with AlertStore(pg_url) as store:
        assert len(store.alerts()) == 1


def test_a_connection_id_resolves_through_airflow_conn_env(pg_url, monkeypatch):
    uri = pg_url.replace("postgresql://", "postgres://")  # Airflow's spelling
    monkeypatch.setenv("AIRFLOW_CONN_DETECTIONS_DB", uri)
    monkeypatch.setenv("DETECTION_ALERT_STORE", "detections_db")
    with open_store() as store:
        assert store.is_postgres
        store.upsert(executions(1, [ueba_row()]))
    with AlertStore(pg_url) as store:
        assert len(store.alerts()) == 1, "the connection's schema (search_path) was used"


def test_a_connection_object_from_the_airflow_layer_is_used(pg_url):
    from include.detection.connections import resolve_store

    class AirflowConnection:  # the attributes airflow.sdk.Connection has
        conn_id, conn_type, host, port, login = "db", "postgres", "127.0.0.1", 5432, "postgres"
        password, schema = "", "test"
        extra_dejson = {"options": "-csearch_path=" + pg_url.rsplit("%3D", 1)[1]}

    url = resolve_store("db", lambda conn_id: AirflowConnection() if conn_id == "db" else None)
    with AlertStore(url) as store:
        store.upsert(executions(1, [ueba_row()]))
    with AlertStore(pg_url) as store:
        assert len(store.alerts()) == 1


@pytest.mark.parametrize(
    "value, message",
    [
        ("no_such_conn", "no connection 'no_such_conn' is defined"),
        ("postgresql://postgres:hunter2-secret@127.0.0.1:1/test", "cannot connect"),
    ],
    ids=["unknown-connection-id", "unreachable-server"],
)
def test_store_configuration_errors_are_usage_errors_without_secrets(value, message, monkeypatch):
    monkeypatch.setenv("DETECTION_ALERT_STORE", value)
    with pytest.raises(UsageError, match=message) as err:
        open_store()
    assert "hunter2-secret" not in str(err.value)


# --- two processes at once -----------------------------------------------------------------------


def _upsert_worker(url, alerts, rounds, barrier):
    barrier.wait(10)
    with AlertStore(url) as store:
        for _ in range(rounds):
            store.upsert(alerts)


def _deliver_worker(url, settings, barrier):
    """Issue #9: each of several workers delivering at once used to fail ("claimed by another
    worker") although every alert got delivered; now none may raise."""
    barrier.wait(10)
    with AlertStore(url) as store:
        destinations.deliver_pending(store, ["jira"], settings={"jira": settings})


def run_in_two_processes(target, args_a, args_b):
    barrier = FORK.Barrier(2)
    procs = [FORK.Process(target=target, args=(*args, barrier)) for args in (args_a, args_b)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]


def test_two_processes_upserting_the_same_alerts_lose_no_evidence(store_url):
    left = executions(6, [ueba_row()])
    right = executions(
        6, [ueba_row(TimeGenerated="2026-10-31T09:55:00Z", SourceIPLocation="Kenya")]
    )
    AlertStore(store_url).close()  # schema first: the race is on the rows
    # One round each: a lost update would be final (later rounds would merge it back in).
    run_in_two_processes(_upsert_worker, (store_url, left, 1), (store_url, right, 1))
    with AlertStore(store_url) as store:
        stored = store.alerts()
    assert len(stored) == 6
    assert all(len(a["evidence"]) == 2 for a in stored), "both processes' evidence is merged"
    assert all(a["revision"] == 2 for a in stored), "one insert and one merge per alert"


def test_two_processes_delivering_at_once_create_one_ticket_per_alert(store_url, jira):
    with AlertStore(store_url) as store:
        alerts = executions(6, [ueba_row()])
        store.upsert(alerts)
    # Slow creates: without claims both workers would search, find nothing, and both create.
    jira.fail(times=100, delay=0.15, slow=True, method="POST", path="/rest/api/2/issue")
    settings = {
        "url": jira.url,
        "user": jira.user,
        "token": jira.password,
        "project": "SEC",
        **FAST_HTTP,
        "timeout": 5,
    }
    run_in_two_processes(_deliver_worker, (store_url, settings), (store_url, settings))
    assert len(jira.issues) == 6
    assert sorted(len(jira.by_label(f"detection-alert-{a['id']}")) for a in alerts) == [1] * 6
    with AlertStore(store_url) as store:
        log = store.delivery_log()
        assert sorted(e["alert_id"] for e in log) == sorted(a["id"] for a in alerts)
        assert {e["action"] for e in log} == {"created"}
        assert len({e["worker"] for e in log}) == 2, "both workers delivered a share"
        assert store.pending_ids("jira") == []


UNSTORABLE = {
    "nul": "mal\x00lory@contoso.com",
    "lone-surrogate": "mal\udc80lory@contoso.com",
    "both": "\x00\ud800@contoso.com",
}


@pytest.mark.parametrize("caller", UNSTORABLE.values(), ids=UNSTORABLE.keys())
def test_one_unstorable_caller_never_blocks_the_windows_other_alerts(store_url, caller):
    """Issue #9: a NUL in one Caller made PostgreSQL refuse the upsert and roll back every alert
    of the window (a lone surrogate failed on both stores). Both are stored as U+FFFD."""
    placeholder = (
        "PLACEHOLDER@contoso.com"  # the sources clean surrogates; the store must not rely on it
    )
    good = [
        *run_command("exec-good", Caller="alice@contoso.com"),
        *run_command("exec-bad", Caller=placeholder, start="2026-10-31T10:05:00Z"),
    ]
    rows = [
        ueba_row(UserPrincipalName="alice@contoso.com"),
        ueba_row(UserPrincipalName=placeholder),
    ]
    built = build_alerts(correlate(activity(good), ueba(rows)), RULE, *W1)
    alerts = json.loads(json.dumps(built).replace(placeholder, json.dumps(caller)[1:-1]))
    for alert in alerts:
        alert["fingerprint"] = fingerprint(alert["evidence"])
    assert len(alerts) == 2 and caller in {a["caller"] for a in alerts}
    with AlertStore(store_url) as store:
        assert store.upsert(alerts) == {"new": 2, "updated": 0, "unchanged": 0}
        assert store.upsert(alerts) == {"new": 0, "updated": 0, "unchanged": 2}, "stable re-run"
        stored = {a["caller"] for a in store.alerts()}
        store.mark_failed(alerts[0]["id"], "file", f"echoed {caller}")
    # the evidence keeps a NUL (escaped in the JSON body, which both accept); a lone surrogate,
    # which no UTF-8 store can hold, becomes U+FFFD; the same on both dialects
    assert stored == {"alice@contoso.com", re.sub("[\ud800-\udfff]", "\ufffd", caller)}
