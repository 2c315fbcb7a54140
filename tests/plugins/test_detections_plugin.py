"""The UI plugin serves the alert store's alerts."""

from fastapi.testclient import TestClient

from include.detection.alerts import build_alerts
from include.detection.correlation import correlate
from include.detection.store import open_store
from tests.factories import RULE, activity, run_command, ueba, ueba_row


def test_plugin_lists_and_shows_alerts(detection_home):
    from plugins.detections_plugin import DetectionsPlugin, app

    result = correlate(activity(run_command(Caller="mallory@contoso.com")),
                       ueba([ueba_row(UserPrincipalName="mallory@contoso.com")]))
    alerts = build_alerts(result, RULE, "2026-10-30T00:00:00Z", "2026-11-01T00:00:00Z")
    with open_store() as store:
        store.upsert(alerts)
    client = TestClient(app)
    page = client.get("/")
    assert page.status_code == 200 and "mallory@contoso.com" in page.text and "pending" in page.text
    assert client.get(f"/alerts/{alerts[0]['id']}").json()["id"] == alerts[0]["id"]
    assert client.get("/alerts/unknown").status_code == 404
    assert DetectionsPlugin.fastapi_apps[0]["url_prefix"] == "/detections"


def test_plugin_escapes_html_from_the_data(detection_home):
    from plugins.detections_plugin import app

    result = correlate(activity(run_command(Caller="<script>x</script>@evil.com")),
                       ueba([ueba_row(UserPrincipalName="<script>x</script>@evil.com")]))
    with open_store() as store:
        store.upsert(build_alerts(result, RULE, "2026-10-30T00:00:00Z", "2026-11-01T00:00:00Z"))
    page = TestClient(app).get("/").text
    assert "<script>x" not in page and "&lt;script&gt;x" in page
