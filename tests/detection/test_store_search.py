"""The console's queries on the alert store (SQLite and PostgreSQL): server-side filters,
newest first, a page and the count of matches, and the runs behind each alert."""

from __future__ import annotations

import pytest

from include.detection.alerts import build_alerts
from include.detection.correlation import correlate
from include.detection.store import AlertStore
from tests.factories import RULE, activity, authorization, run_command, ueba, ueba_row

W = ("2026-10-30T00:00:00Z", "2026-11-01T00:00:00Z")
PEOPLE = [
    ("alice@contoso.com", "vm-web-01", 5),
    ("bob@contoso.com", "vm-db_01", 10),
    ("carol@fabrikam.com", "vm-web-02", 15),
    ("100%_sure@fabrikam.com", "vm-x", 20),
]


def scope(vm: str) -> str:
    return (
        f"/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.Compute/virtualMachines/{vm}"
    )


def _alerts():
    rows, insights = [], []
    for caller, vm, minute in PEOPLE:
        rows += run_command(
            f"exec-{minute}",
            Caller=caller,
            Authorization=authorization(scope(vm)),
            start=f"2026-10-31T10:{minute:02d}:00Z",
        )
        insights.append(ueba_row(UserPrincipalName=caller))
    return build_alerts(correlate(activity(rows), ueba(insights)), RULE, *W)


@pytest.fixture
def store(store_url):
    with AlertStore(store_url) as store:
        alerts = _alerts()
        store.upsert(
            alerts,
            run={
                "run_id": "scheduled__2026-10-31",
                "dag_id": "d",
                "window_start": W[0],
                "window_end": W[1],
            },
        )
        store.mark_delivered(alerts[0]["id"], "file", "t0", 1)
        store.mark_failed(alerts[1]["id"], "file", "disk full")
        yield store


def callers(page):
    return [a["caller"] for a in page]


FILTERS = {
    "nothing: all, newest first": ({}, [p[0] for p in reversed(PEOPLE)]),
    "user substring, any case": ({"user": "ALICE"}, ["alice@contoso.com"]),
    "user domain": ({"user": "fabrikam"}, ["100%_sure@fabrikam.com", "carol@fabrikam.com"]),
    "like wildcards are literal": ({"user": "100%_"}, ["100%_sure@fabrikam.com"]),
    "percent alone matches only a percent": ({"user": "%"}, ["100%_sure@fabrikam.com"]),
    "vm": ({"vm": "vm-web"}, ["carol@fabrikam.com", "alice@contoso.com"]),
    "vm underscore literal": ({"vm": "db_"}, ["bob@contoso.com"]),
    "time range": (
        {"since": "2026-10-31T10:10:00Z", "until": "2026-10-31T10:20:00Z"},
        ["carol@fabrikam.com", "bob@contoso.com"],
    ),
    "severity": ({"severity": "High"}, [p[0] for p in reversed(PEOPLE)]),
    "severity none": ({"severity": "Low"}, []),
    "delivered": ({"ticket": "delivered"}, ["alice@contoso.com"]),
    "failing": ({"ticket": "failing"}, ["bob@contoso.com"]),
    "pending": ({"ticket": "pending"}, ["100%_sure@fabrikam.com", "carol@fabrikam.com"]),
    "data quality": ({"data_quality": "passed"}, [p[0] for p in reversed(PEOPLE)]),
    "run": ({"run_id": "scheduled__2026-10-31"}, [p[0] for p in reversed(PEOPLE)]),
    "other run": ({"run_id": "manual__x"}, []),
    "combined": ({"user": "contoso", "ticket": "pending"}, []),
}


@pytest.mark.parametrize("filters,expected", FILTERS.values(), ids=FILTERS.keys())
def test_search_filters_server_side(store, filters, expected):
    total, page = store.search(filters, destinations=["file"])
    assert callers(page) == expected and total == len(expected)


def test_search_pages_and_counts(store):
    total, first = store.search({}, limit=3, offset=0)
    _, second = store.search({}, limit=3, offset=3)
    assert total == 4 and len(first) == 3 and len(second) == 1
    assert callers(first + second) == [p[0] for p in reversed(PEOPLE)]


def test_the_runs_behind_an_alert(store):
    alert = _alerts()[0]
    run = {
        "run_id": "backfill__2026-11-01",
        "dag_id": "d",
        "window_start": "2026-10-31T00:00:00Z",
        "window_end": "2026-11-01T00:00:00Z",
    }
    store.upsert([alert], run=run)  # seen again, unchanged
    more = build_alerts(
        correlate(
            activity(
                run_command(
                    "exec-5",
                    Caller=PEOPLE[0][0],
                    Authorization=authorization(scope(PEOPLE[0][1])),
                    start="2026-10-31T10:05:00Z",
                )
            ),
            ueba(
                [
                    ueba_row(UserPrincipalName=PEOPLE[0][0]),
                    ueba_row(UserPrincipalName=PEOPLE[0][0], SourceIPLocation="Peru"),
                ]
            ),
        ),
        RULE,
        *W,
    )
    store.upsert(more, run={**run, "run_id": "manual__1"})
    runs = store.alert_runs(alert["id"])
    assert [(r["run_id"], r["action"]) for r in runs] == [
        ("scheduled__2026-10-31", "created"),
        ("backfill__2026-11-01", "unchanged"),
        ("manual__1", "updated"),
    ]
    store.upsert([alert], run={**run, "run_id": "scheduled__2026-10-31"})  # a retry
    assert store.alert_runs(alert["id"])[0]["action"] == "created", "a retry keeps 'created'"
