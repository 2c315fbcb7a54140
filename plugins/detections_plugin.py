"""Airflow UI view: the detection alerts in the alert store, under Browse -> Detections.

Airflow 3 plugins serve FastAPI apps (the Flask-AppBuilder views are gone); `external_views`
adds the menu entry. The app reads the store that DETECTION_ALERT_STORE names. Airflow's login
does not cover plugin routes: put the API server behind your SSO proxy as for the rest of the UI.
"""

from __future__ import annotations

import html

from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, JSONResponse

app = FastAPI(title="Detections", docs_url=None, redoc_url=None)

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Detections</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}th{{background:#f3f3f3}}</style>
</head><body><h2>Detection alerts ({count})</h2><table><tr><th>Start</th><th>Severity</th>
<th>Title</th><th>Evidence rows</th><th>Tickets</th><th>Data quality</th><th>Id</th></tr>
{rows}</table></body></html>"""


def _alerts() -> list[dict]:
    from include.detection.store import open_store

    with open_store() as store:
        return store.alerts()


@app.get("/", response_class=HTMLResponse)
def index() -> str:
    alerts = _alerts()
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
            a["start_time"], a["severity"], a["title"], len(a["evidence"]),
            ", ".join(f"{t['destination']}:{t['ticket']}" for t in a["tickets"]) or "pending",
            a.get("data_quality", ""), a["id"])) + "</tr>"
        for a in reversed(alerts))
    return _PAGE.format(count=len(alerts), rows=rows)


@app.get("/alerts/{alert_id}")
def alert(alert_id: str) -> JSONResponse:
    match = next((a for a in _alerts() if a["id"] == alert_id), None)
    if match is None:
        raise HTTPException(status_code=404, detail=f"no alert {alert_id}")
    return JSONResponse(match)


class DetectionsPlugin(AirflowPlugin):
    name = "detections"
    fastapi_apps = [{"app": app, "url_prefix": "/detections", "name": "Detections"}]
    external_views = [{"name": "Detections", "href": "/detections/", "destination": "nav",
                       "category": "browse", "url_route": "detections"}]
