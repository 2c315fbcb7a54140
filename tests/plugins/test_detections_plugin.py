"""The UI plugin: every route behind the Airflow login, in-process on the API server's own app
(`airflow.api_fastapi.app.create_app`, the simple auth manager, real JWTs). The same checks
against a running `airflow api-server` are in tests/dags/test_scheduler_backfill.py."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from include.detection.alerts import build_alerts
from include.detection.correlation import correlate
from include.detection.store import open_store
from tests.factories import RULE, activity, run_command, ueba, ueba_row

CALLER = "mallory@contoso.com"
# role per user, as [core] simple_auth_manager_users spells them
USERS = {"admin": "admin", "analyst": "viewer", "responder": "user"}


@pytest.fixture
def stored_alert(detection_home):
    result = correlate(
        activity(run_command(Caller=CALLER)), ueba([ueba_row(UserPrincipalName=CALLER)])
    )
    (alert,) = build_alerts(result, RULE, "2026-10-30T00:00:00Z", "2026-11-01T00:00:00Z")
    with open_store() as store:
        store.upsert([alert])
    return alert


@pytest.fixture(scope="module")
def api(airflow_db, tmp_path_factory):
    """The API server's app with the plugin mounted, and a JWT per user."""
    mp = pytest.MonkeyPatch()
    mp.setenv(
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", ",".join(f"{u}:{r}" for u, r in USERS.items())
    )
    mp.setenv(
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
        str(tmp_path_factory.mktemp("auth") / "passwords.json"),
    )
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    client = TestClient(create_app())
    tokens = {
        u: get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=u, role=r))
        for u, r in USERS.items()
    }
    yield client, tokens
    mp.undo()


def _as(tokens, user):
    return {"Authorization": f"Bearer {tokens[user]}"} if user else {}


ROUTES = [
    ("GET", "/detections/"),
    ("GET", "/detections/alerts/{id}"),
    ("GET", "/detections/alerts/unknown"),
    ("POST", "/detections/alerts/{id}/redeliver"),
    ("GET", "/detections/api/alerts"),
    ("GET", "/detections/api/alerts/{id}"),
    ("GET", "/detections/runs/runcommand_ueba_breach/manual__1"),
    ("GET", "/detections/docs/20261030T000000Z--20261101T000000Z/AzureActivity/index.html"),
    ("GET", "/detections/openapi.json"),
    ("GET", "/detections/docs"),
]


@pytest.mark.parametrize("method,route", ROUTES, ids=[f"{m} {r}" for m, r in ROUTES])
def test_anonymous_requests_get_no_alert_data(api, stored_alert, method, route):
    client, _ = api
    resp = client.request(method, route.format(id=stored_alert["id"]))
    assert resp.status_code in (401, 403, 404), resp.status_code
    assert resp.status_code != 404 or route.endswith(("openapi.json", "docs"))
    assert CALLER not in resp.text and stored_alert["id"] not in resp.text


def test_a_forged_or_malformed_token_is_refused(api, stored_alert):
    client, tokens = api
    forged = tokens["admin"][:-4] + ("AAAA" if not tokens["admin"].endswith("AAAA") else "BBBB")
    for headers in ({"Authorization": f"Bearer {forged}"}, {"Authorization": "Bearer x.y.z"}):
        resp = client.get("/detections/", headers=headers)
        assert resp.status_code in (401, 403) and CALLER not in resp.text


def test_a_logged_in_viewer_reads_the_list_and_the_alert(api, stored_alert):
    client, tokens = api
    page = client.get("/detections/", headers=_as(tokens, "analyst"))
    assert page.status_code == 200 and CALLER in page.text and "pending" in page.text
    one = client.get(f"/detections/api/alerts/{stored_alert['id']}", headers=_as(tokens, "analyst"))
    assert one.status_code == 200 and one.json()["id"] == stored_alert["id"]
    page = client.get(f"/detections/alerts/{stored_alert['id']}", headers=_as(tokens, "analyst"))
    assert page.status_code == 200 and CALLER in page.text
    assert 'id="redeliver"' not in page.text, "a viewer gets no redeliver button"
    assert (
        client.get("/detections/alerts/unknown", headers=_as(tokens, "analyst")).status_code == 404
    )


def test_the_ui_cookie_is_a_login_too(api, stored_alert):
    """The UI shows the page in an iframe on the same origin: the browser sends `_token`."""
    client, tokens = api
    client.cookies.set("_token", tokens["analyst"])
    try:
        assert client.get("/detections/").status_code == 200
    finally:
        client.cookies.clear()


def test_redeliver_needs_edit_access_and_the_request_header(api, stored_alert):
    client, tokens = api
    url = f"/detections/alerts/{stored_alert['id']}/redeliver"
    header = {"X-Detections-Request": "redeliver"}
    assert client.post(url, headers={**_as(tokens, "analyst"), **header}).status_code == 403
    assert client.post(url, headers=_as(tokens, "responder")).status_code == 403, (
        "a cross-site form post carries the cookie but cannot set the header"
    )
    resp = client.post(url, headers={**_as(tokens, "responder"), **header})
    assert resp.status_code == 200 and resp.json()["delivered"] is True
    with open_store() as store:
        assert [t["destination"] for t in store.get(stored_alert["id"])["tickets"]] == ["file"]


def test_plugin_escapes_html_from_the_data(api, detection_home):
    client, tokens = api
    evil = "<script>x</script>@evil.com"
    result = correlate(activity(run_command(Caller=evil)), ueba([ueba_row(UserPrincipalName=evil)]))
    with open_store() as store:
        store.upsert(build_alerts(result, RULE, "2026-10-30T00:00:00Z", "2026-11-01T00:00:00Z"))
    page = client.get("/detections/", headers=_as(tokens, "analyst")).text
    assert "<script>x" not in page and "&lt;script&gt;x" in page


def test_the_plugin_registers_its_app_and_menu_entry():
    from plugins.detections_plugin import DetectionsPlugin

    assert DetectionsPlugin.fastapi_apps[0]["url_prefix"] == "/detections"
    nav, tab = DetectionsPlugin.external_views
    assert (nav["href"], nav["category"]) == ("/detections/", "browse")
    assert (tab["destination"], tab["href"]) == ("dag_run", "/detections/runs/{DAG_ID}/{RUN_ID}")


def _run(airflow_db, run_id, end="2026-11-01T00:00:00+00:00"):
    """A DAG run of the detection DAG in Airflow's metadata DB, as the scheduler leaves it."""
    import pendulum
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunType

    end = pendulum.parse(end)
    with create_session() as session:
        session.add(
            DagRun(
                dag_id="runcommand_ueba_breach",
                run_id=run_id,
                run_type=DagRunType.MANUAL,
                logical_date=end.subtract(days=1),
                data_interval=(end.subtract(days=1), end),
                state="success",
            )
        )


def test_the_run_tab_shows_the_runs_alerts_and_data_quality(api, airflow_db, detection_home):
    import json as _json

    from include.detection import config, pipeline
    from include.detection.rule import load_rule

    client, tokens = api
    result = correlate(
        activity(run_command(Caller=CALLER)), ueba([ueba_row(UserPrincipalName=CALLER)])
    )
    alerts = build_alerts(result, RULE, "2026-10-30T00:00:00Z", "2026-11-01T00:00:00Z")
    with open_store() as store:
        store.upsert(
            alerts,
            run={
                "run_id": "manual__tab",
                "dag_id": "runcommand_ueba_breach",
                "window_start": "2026-10-30T00:00:00Z",
                "window_end": "2026-11-01T00:00:00Z",
            },
        )
    folder = pipeline.run_folder(
        config.staging(), load_rule(), "2026-10-30T00:00:00Z", "2026-11-01T00:00:00Z"
    )
    verdict = Path(pipeline.Staged(folder, "AzureActivity").verdict)
    verdict.parent.mkdir(parents=True)
    verdict.write_text(
        _json.dumps(
            {
                "summary": {
                    "status": "passed",
                    "summary": "AzureActivity: passed, complete; 42 rows in window",
                }
            }
        )
    )
    docs = Path(pipeline.Staged(folder, "AzureActivity").docs)
    docs.mkdir(parents=True)
    (docs / "index.html").write_text("<html>docs of the run</html>")
    _run(airflow_db, "manual__tab")
    page = client.get(
        "/detections/runs/runcommand_ueba_breach/manual__tab", headers=_as(tokens, "analyst")
    )
    assert page.status_code == 200
    assert CALLER in page.text and "42 rows in window" in page.text and "not validated" in page.text
    link = f"/detections/docs/{Path(folder).name}/AzureActivity/index.html"
    assert link in page.text
    served = client.get(link, headers=_as(tokens, "analyst"))
    assert served.status_code == 200 and "docs of the run" in served.text
    other = client.get("/detections/runs/some_other_dag/x", headers=_as(tokens, "analyst"))
    assert other.status_code == 200 and "not a detection DAG" in other.text
    assert (
        client.get(
            "/detections/runs/runcommand_ueba_breach/nope", headers=_as(tokens, "analyst")
        ).status_code
        == 404
    )


def test_a_run_over_workspaces_shows_each_workspaces_quality_and_docs(
    api, airflow_db, detection_home
):
    """Issue #10 point 6: each workspace's tables are validated in its own folder; the run tab
    lists them all, an alert's page those of its own workspace, each with its Data Docs."""
    import json as _json

    from include.detection import config, pipeline
    from include.detection.rule import load_rule

    client, tokens = api
    window = ("2026-11-18T00:00:00Z", "2026-11-20T00:00:00Z")  # no other test's run
    tenants = {
        "11111111-1111-1111-1111-111111111111": "passed",
        "22222222-2222-2222-2222-222222222222": "failed",
    }
    for workspace, status in tenants.items():
        folder = pipeline.run_folder(config.staging(), load_rule(), *window, workspace)
        for table in ("AzureActivity", "BehaviorAnalytics"):
            staged = pipeline.Staged(folder, table)
            Path(staged.verdict).parent.mkdir(parents=True, exist_ok=True)
            Path(staged.verdict).write_text(
                _json.dumps(
                    {
                        "summary": {
                            "status": status,
                            "summary": f"{table} of {workspace[:2]}: {status}",
                        }
                    }
                )
            )
            Path(staged.docs).mkdir(parents=True)
            (Path(staged.docs) / "index.html").write_text(
                f"<html>docs {workspace[:2]} {table}</html>"
            )
    result = correlate(
        activity(run_command(Caller=CALLER)), ueba([ueba_row(UserPrincipalName=CALLER)])
    )
    (alert,) = build_alerts(result, RULE, *window, workspace="22222222-2222-2222-2222-222222222222")
    with open_store() as store:
        store.upsert(
            [alert],
            run={
                "run_id": "manual__ws",
                "dag_id": "runcommand_ueba_breach",
                "window_start": window[0],
                "window_end": window[1],
            },
        )
    _run(airflow_db, "manual__ws", end="2026-11-20T00:00:00+00:00")

    page = client.get(
        "/detections/runs/runcommand_ueba_breach/manual__ws", headers=_as(tokens, "analyst")
    )
    assert page.status_code == 200
    for workspace in tenants:
        for table in ("AzureActivity", "BehaviorAnalytics"):
            assert f"{table} ({workspace})" in page.text
            assert f"{table} of {workspace[:2]}" in page.text
    links = re.findall(r'href="(/detections/docs/[^"]+)"', page.text)
    assert len(links) == 4
    for link in links:
        served = client.get(html.unescape(link), headers=_as(tokens, "analyst"))
        assert served.status_code == 200 and "<html>docs " in served.text, link

    own = client.get(f"/detections/alerts/{alert['id']}", headers=_as(tokens, "analyst"))
    assert own.status_code == 200
    assert "AzureActivity of 22: failed" in own.text and "of 11:" not in own.text
    # a workspace folder name is checked as a run folder is: nothing else is reachable
    for bad in (
        "20261118T000000Z--20261120T000000Z~..",
        "20261118T000000Z--20261120T000000Z~x",
        "20261118T000000Z--20261120T000000Z~workspace=a~workspace=b",
        "20261118T000000Z--20261120T000000Z~workspace=11111111-1111-1111-1111-111111111111"
        "%2f..%2f..",
    ):
        resp = client.get(
            f"/detections/docs/{bad}/AzureActivity/index.html", headers=_as(tokens, "analyst")
        )
        assert resp.status_code == 404, bad


TRAVERSALS = [
    "..%2f..%2f..%2fetc%2fpasswd",
    "%2e%2e/%2e%2e/alerts.db",
    "%2fetc%2fpasswd",
    "..%5c..%5calerts.db",
]


@pytest.mark.parametrize(
    "path", TRAVERSALS, ids=["dotdot", "encoded-dots", "absolute", "backslash"]
)
def test_data_docs_never_serve_a_file_outside_the_runs_docs(api, detection_home, path):
    from include.detection import config
    from include.detection.rule import load_rule

    client, tokens = api
    folder = "20261030T000000Z--20261101T000000Z"
    docs = config.staging() / load_rule().id / folder / "data_docs" / "AzureActivity"
    docs.mkdir(parents=True)
    (docs / "index.html").write_text("ok")
    (config.home()).mkdir(parents=True, exist_ok=True)
    (config.home() / "alerts.db").write_text("SECRET-STORE")
    for url in (
        f"/detections/docs/{folder}/AzureActivity/{path}",
        f"/detections/docs/..%2f..%2f/AzureActivity/{path}",
        f"/detections/docs/{folder}/..%2fquality/{path}",
    ):
        resp = client.get(url, headers=_as(tokens, "analyst"))
        assert resp.status_code == 404 and "SECRET" not in resp.text and "root:" not in resp.text


FILTER_PAGES = {
    "by user": ("user=MALLORY", 1),
    "by other user": ("user=nobody", 0),
    "by ticket pending": ("ticket=pending", 1),
    "by ticket delivered": ("ticket=delivered", 0),
    "by time": ("since=2026-10-31&until=2026-11-01", 1),
    "by severity": ("severity=Low", 0),
}


@pytest.mark.parametrize("query,matches", FILTER_PAGES.values(), ids=FILTER_PAGES.keys())
def test_the_list_filters_server_side(api, stored_alert, query, matches):
    client, tokens = api
    page = client.get(f"/detections/?{query}", headers=_as(tokens, "analyst"))
    assert page.status_code == 200 and f"({matches} matching)" in page.text
    assert (CALLER in page.text) == bool(matches)
    assert (
        client.get(f"/detections/api/alerts?{query}", headers=_as(tokens, "analyst")).json()[
            "total"
        ]
        == matches
    )


@pytest.mark.parametrize(
    "query",
    ["severity=Catastrophic", "ticket=lost", "since=yesterday", "per_page=100000", "page=0"],
)
def test_a_bad_filter_is_a_400_naming_it(api, stored_alert, query):
    client, tokens = api
    resp = client.get(f"/detections/?{query}", headers=_as(tokens, "analyst"))
    assert resp.status_code in (400, 422), resp.status_code
