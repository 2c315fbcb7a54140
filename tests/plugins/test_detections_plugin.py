"""The UI plugin: every route behind the Airflow login, in-process on the API server's own app
(`airflow.api_fastapi.app.create_app`, the simple auth manager, real JWTs). The same checks
against a running `airflow api-server` are in tests/dags/test_scheduler_backfill.py."""

from __future__ import annotations

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
    result = correlate(activity(run_command(Caller=CALLER)), ueba([ueba_row(UserPrincipalName=CALLER)]))
    (alert,) = build_alerts(result, RULE, "2026-10-30T00:00:00Z", "2026-11-01T00:00:00Z")
    with open_store() as store:
        store.upsert([alert])
    return alert


@pytest.fixture(scope="module")
def api(airflow_db, tmp_path_factory):
    """The API server's app with the plugin mounted, and a JWT per user."""
    mp = pytest.MonkeyPatch()
    mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",
              ",".join(f"{u}:{r}" for u, r in USERS.items()))
    mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
              str(tmp_path_factory.mktemp("auth") / "passwords.json"))
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    client = TestClient(create_app())
    tokens = {u: get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=u, role=r))
              for u, r in USERS.items()}
    yield client, tokens
    mp.undo()


def _as(tokens, user):
    return {"Authorization": f"Bearer {tokens[user]}"} if user else {}


ROUTES = [("GET", "/detections/"), ("GET", "/detections/alerts/{id}"),
          ("GET", "/detections/alerts/unknown"), ("POST", "/detections/alerts/{id}/redeliver"),
          ("GET", "/detections/openapi.json"), ("GET", "/detections/docs")]


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
    one = client.get(f"/detections/alerts/{stored_alert['id']}", headers=_as(tokens, "analyst"))
    assert one.status_code == 200 and one.json()["id"] == stored_alert["id"]
    assert client.get("/detections/alerts/unknown", headers=_as(tokens, "analyst")).status_code == 404


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
    assert client.post(url, headers=_as(tokens, "responder")).status_code == 403, \
        "a cross-site form post carries the cookie but cannot set the header"
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
    assert DetectionsPlugin.external_views[0]["href"] == "/detections/"
