"""Airflow UI console of the detection alerts: Browse -> Detections, and a Detections tab on
every DAG run.

Airflow 3 plugins serve FastAPI apps (the Flask-AppBuilder views are gone); `external_views` adds
the menu entry and the run tab, which the UI shows in an iframe on the same origin, so the UI's
`_token` cookie reaches these routes.

Every route requires the Airflow login: the API server's own dependencies
(`airflow.api_fastapi.core_api.security`) resolve the user from the JWT (the `Authorization:
Bearer` header, or the UI's cookie) and ask the configured auth manager whether that user may
read (GET) or edit (PUT) the detection DAG, as the rest of the UI does. The login does not cover
plugin routes by itself, hence the dependency on the whole app, and no OpenAPI document: the
app-level dependencies would not cover it.

Pages are Jinja2 templates in `templates/detections/` (autoescaped: every value from the data is
text, never markup), styled from local CSS only (no CDN). What to show comes from
include/detection/console.py and the alert store, which filters and pages server-side.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates

DAG_ID = "runcommand_ueba_breach"
# Reading alerts is reading the DAG's output; redelivering changes what it did: edit access.
CAN_READ = Depends(requires_access_dag("GET", param_dag_id=DAG_ID))
CAN_EDIT = Depends(requires_access_dag("PUT", param_dag_id=DAG_ID))
# A redeliver is a POST the page makes with this header: a cross-site form cannot set it, so a
# logged-in analyst's cookie cannot be used by another site to trigger one (CSRF).
CSRF_HEADER = "X-Detections-Request"
PREFIX = "/detections"

app = FastAPI(
    title="Detections", docs_url=None, redoc_url=None, openapi_url=None, dependencies=[CAN_READ]
)
templates = Jinja2Templates(directory=Path(__file__).with_name("templates") / "detections")


def _store():
    from include.detection.store import open_store

    return open_store()


def _ui_base() -> str:
    """Where the Airflow UI lives, for links that leave the iframe ([api] base_url)."""
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="") or ""
    return base.rstrip("/") if base.startswith(("http://", "https://", "/")) else ""


def _can_edit(user) -> bool:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    return get_auth_manager().is_authorized_dag(
        method="PUT", details=DagDetails(id=DAG_ID), user=user
    )


def _page(request: Request, name: str, **context) -> HTMLResponse:
    return templates.TemplateResponse(
        request, name, {"prefix": PREFIX, "ui": _ui_base(), "dag_id": DAG_ID, **context}
    )


def _usage(exc) -> HTTPException:
    return HTTPException(status_code=400, detail=str(exc))


def _search(request: Request, page: int, per_page: int) -> tuple[int, list[dict], int]:
    """One page of the filtered alerts (total, alerts, page size); a bad filter is a 400."""
    from include.detection import config, console
    from include.detection.errors import UsageError

    try:
        filters = console.parse_filters(dict(request.query_params))
        limit, offset = console.page_window(page, per_page)
    except UsageError as exc:
        raise _usage(exc) from None
    with _store() as store:
        total, alerts = store.search(filters, limit, offset, config.destinations())
    return total, alerts, limit


@app.get("/", response_class=HTMLResponse)
def index(request: Request, page: int = 1, per_page: int = 50) -> HTMLResponse:
    """The alerts, newest first, filtered server-side (user, VM, subscription, severity, time
    range, ticket state, data quality), one page at a time with the count of matches."""
    from include.detection import console

    total, alerts, limit = _search(request, page, per_page)
    kept = {k: v for k, v in request.query_params.items() if k not in ("page",) and v}
    pages = max(1, -(-total // limit))
    return _page(
        request,
        "index.html",
        alerts=alerts,
        total=total,
        page=page,
        pages=pages,
        per_page=limit,
        params=dict(request.query_params),
        console=console,
        link=lambda p: "?" + urlencode({**kept, "page": p}),
    )


@app.get("/api/alerts")
def list_alerts(request: Request, page: int = 1, per_page: int = 50) -> JSONResponse:
    """The same page as JSON."""
    total, alerts, limit = _search(request, page, per_page)
    return JSONResponse({"total": total, "page": page, "per_page": limit, "alerts": alerts})


def _alert(alert_id: str) -> dict:
    from include.detection import config

    with _store() as store:
        found = store.get(alert_id, config.destinations())
        if found is None:
            raise HTTPException(status_code=404, detail="no such alert")
        found["runs"] = store.alert_runs(alert_id)
        found["delivery_log"] = store.delivery_log(alert_id)
    return found


@app.get("/api/alerts/{alert_id}")
def alert_json(alert_id: str) -> JSONResponse:
    return JSONResponse(_alert(alert_id))


@app.get("/alerts/{alert_id}", response_class=HTMLResponse)
def alert_page(alert_id: str, request: Request, user: GetUserDep) -> HTMLResponse:
    """Entities, custom details, every evidence row, tickets with their delivery attempts and
    last (redacted) error, the runs behind the alert and the data quality of its window."""
    from include.detection import config, console
    from include.detection.correlation import OUTPUT_COLUMNS
    from include.detection.rule import load_rule

    alert = _alert(alert_id)
    window = alert.get("window") or {}
    quality = (
        console.run_quality(
            config.staging(),
            load_rule().id,
            window.get("start"),
            window.get("end"),
            alert.get("workspace"),
        )
        if window.get("start")
        else {}
    )
    return _page(
        request,
        "alert.html",
        alert=alert,
        columns=OUTPUT_COLUMNS,
        quality=quality,
        can_edit=_can_edit(user),
        csrf_header=CSRF_HEADER,
        console=console,
    )


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
            return JSONResponse(
                {"delivered": False, "error": str(exc), "report": getattr(exc, "report", {})},
                status_code=502,
            )
    return JSONResponse({"delivered": True, "report": report})


def _interval(dag_id: str, run_id: str):
    """The DAG run's data interval, from Airflow's metadata DB (this is the API server)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        if run is None or run.data_interval_end is None:
            return None
        return run.data_interval_start, run.data_interval_end, run.state


@app.get("/runs/{dag_id}/{run_id}", response_class=HTMLResponse)
def run_tab(dag_id: str, run_id: str, request: Request) -> HTMLResponse:
    """The Detections tab of a DAG run: the alerts it created, updated or saw again, and both
    tables' data-quality verdicts for its window."""
    from include.detection import config, console
    from include.detection.rule import load_rule

    if dag_id != DAG_ID:
        return _page(request, "run.html", run_id=run_id, other_dag=dag_id)
    interval = _interval(dag_id, run_id)
    if interval is None:
        raise HTTPException(status_code=404, detail="no such DAG run")
    rule = load_rule()
    _, end, state = interval
    start = end - rule.query_period  # the rule looks back its query period, not one interval
    with _store() as store:
        total, alerts = store.search({"run_id": run_id}, 200, 0, config.destinations())
    return _page(
        request,
        "run.html",
        run_id=run_id,
        other_dag=None,
        alerts=alerts,
        total=total,
        state=state,
        start=start.isoformat(),
        end=end.isoformat(),
        quality=console.run_quality(config.staging(), rule.id, start.isoformat(), end.isoformat()),
    )


@app.get("/docs/{folder}/{table}/{path:path}")
def data_docs(folder: str, table: str, path: str) -> Response:
    """Great Expectations Data Docs of a run, only from that run's folder in the staging area."""
    from include.detection import config, console
    from include.detection.rule import load_rule

    try:
        page = console.docs_file(config.staging(), load_rule().id, folder, table, path)
    except FileNotFoundError:
        raise HTTPException(status_code=404, detail="no such Data Docs page") from None
    return Response(page.data, media_type=page.media_type)


class DetectionsPlugin(AirflowPlugin):
    name = "detections"
    fastapi_apps = [{"app": app, "url_prefix": PREFIX, "name": "Detections"}]
    external_views = [
        {
            "name": "Detections",
            "href": f"{PREFIX}/",
            "destination": "nav",
            "category": "browse",
            "url_route": "detections",
        },
        {
            "name": "Detections",
            "href": f"{PREFIX}/runs/{{DAG_ID}}/{{RUN_ID}}",
            "destination": "dag_run",
            "url_route": "detections_run",
        },
    ]
