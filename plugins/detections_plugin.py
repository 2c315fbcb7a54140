"""Airflow UI view: the detection alerts in the alert store, under Browse -> Detections.

Airflow 3 plugins serve FastAPI apps (the Flask-AppBuilder views are gone); `external_views` adds
the menu entry, which the UI shows in an iframe on the same origin, so the UI's `_token` cookie
reaches these routes.

Every route requires the Airflow login: the API server's own dependencies
(`airflow.api_fastapi.core_api.security`) resolve the user from the JWT (the `Authorization:
Bearer` header, or the UI's cookie) and ask the configured auth manager whether that user may
read (GET) or edit (PUT) the detection DAG, as the rest of the UI does. The login does not cover
plugin routes by itself, hence the dependency on every route, and no OpenAPI document: the
app-level dependencies would not cover it.

Pages are Jinja2 templates in `templates/detections/` (autoescaped: every value from the data is
text, never markup).
"""

from __future__ import annotations

from pathlib import Path

from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates

DAG_ID = "runcommand_ueba_breach"
# Reading alerts is reading the DAG's output; redelivering changes what it did: edit access.
CAN_READ = Depends(requires_access_dag("GET", param_dag_id=DAG_ID))
CAN_EDIT = Depends(requires_access_dag("PUT", param_dag_id=DAG_ID))
# A redeliver is a POST the page makes with this header: a cross-site form cannot set it, so a
# logged-in analyst's cookie cannot be used by another site to trigger one (CSRF).
CSRF_HEADER = "X-Detections-Request"

app = FastAPI(title="Detections", docs_url=None, redoc_url=None, openapi_url=None,
              dependencies=[CAN_READ])
templates = Jinja2Templates(directory=Path(__file__).with_name("templates") / "detections")


def _store():
    from include.detection.store import open_store

    return open_store()


@app.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    with _store() as store:
        alerts = list(reversed(store.alerts()))
    return templates.TemplateResponse(request, "index.html", {"alerts": alerts})


@app.get("/alerts/{alert_id}")
def alert(alert_id: str) -> JSONResponse:
    with _store() as store:
        found = store.get(alert_id)
    if found is None:
        raise HTTPException(status_code=404, detail="no such alert")
    return JSONResponse(found)


@app.post("/alerts/{alert_id}/redeliver", dependencies=[CAN_EDIT])
def redeliver(alert_id: str, request: Request) -> JSONResponse:
    """The same code as `alerts redeliver ID --force`: the alert becomes pending again for the
    configured destinations and is delivered now (each updates its existing ticket)."""
    if request.headers.get(CSRF_HEADER) != "redeliver":
        raise HTTPException(status_code=403, detail=f"missing {CSRF_HEADER} header")
    from include.detection.destinations import redeliver as redeliver_alert
    from include.detection.errors import DeliveryError, UsageError

    with _store() as store:
        try:
            report = redeliver_alert(store, alert_id, force=True)
        except UsageError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        except DeliveryError as exc:  # still pending: the page says so; the next run retries
            return JSONResponse({"delivered": False, "error": str(exc),
                                 "report": getattr(exc, "report", {})}, status_code=502)
    return JSONResponse({"delivered": True, "report": report})


class DetectionsPlugin(AirflowPlugin):
    name = "detections"
    fastapi_apps = [{"app": app, "url_prefix": "/detections", "name": "Detections"}]
    external_views = [{"name": "Detections", "href": "/detections/", "destination": "nav",
                       "category": "browse", "url_route": "detections"}]
