"""What the alerts console shows, without Airflow: filters from a query string, the Data Docs
file a request may read, the link of a ticket, a run's data-quality summary. The UI plugin
(plugins/detections_plugin.py) adds the Airflow login and the pages.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from .errors import UsageError

TICKET_STATES = ("delivered", "pending", "failing")
QUALITY_STATES = ("passed", "warnings", "failed")
SEVERITIES = ("High", "Medium", "Low", "Informational")
TEXT_FILTERS = ("user", "vm", "subscription")
PAGE_SIZES = (25, 50, 100, 200)
# A run folder's name (pipeline.run_folder): the only shape a Data Docs URL may name.
RUN_FOLDER = re.compile(r"^\d{8}T\d{6}Z--\d{8}T\d{6}Z$")


def parse_filters(params: dict) -> dict:
    """Query parameters as store.search filters; a bad value is a UsageError naming it."""
    out: dict = {}
    for key in TEXT_FILTERS:
        value = (params.get(key) or "").strip()
        if len(value) > 200:
            raise UsageError(f"{key}: at most 200 characters")
        if value:
            out[key] = value
    for key, allowed in (("severity", SEVERITIES), ("ticket", TICKET_STATES),
                         ("data_quality", QUALITY_STATES)):
        value = params.get(key) or ""
        if value and value not in allowed:
            raise UsageError(f"{key}: one of {', '.join(allowed)}")
        if value:
            out[key] = value
    for key in ("since", "until"):
        if params.get(key):
            out[key] = iso_utc(params[key], key)
    return out


def iso_utc(text: str, name: str) -> str:
    """A date or datetime as the store's sortable text form, `YYYY-MM-DDTHH:MM:SS` in UTC."""
    try:
        value = datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise UsageError(f"{name}: not a date or time ({text!r}; e.g. 2026-10-31 or "
                         "2026-10-31T10:00)") from None
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S")


def page_window(page, per_page) -> tuple[int, int]:
    """(limit, offset) for 1-based `page`; sizes outside PAGE_SIZES are a UsageError."""
    try:
        page = 1 if page in (None, "") else int(page)
        per_page = 50 if per_page in (None, "") else int(per_page)
    except (TypeError, ValueError):
        raise UsageError("page and per_page are whole numbers") from None
    if per_page not in PAGE_SIZES or not 1 <= page <= 100_000:
        raise UsageError(f"per_page: one of {PAGE_SIZES}; page: 1 or more")
    return per_page, (page - 1) * per_page


def docs_file(staging: Path, rule_id: str, folder: str, table: str, path: str) -> Path:
    """The Data Docs file a URL names, only inside that run's `data_docs/<table>/` folder (no
    `..`, no absolute path, no link out of it); FileNotFoundError otherwise."""
    from .sources import TABLES

    if not RUN_FOLDER.match(folder) or table not in TABLES:
        raise FileNotFoundError(path)
    root = (Path(staging) / rule_id / folder / "data_docs" / table).resolve()
    target = (root / (path or "index.html")).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise FileNotFoundError(path)
    return target


def run_quality(staging: Path, rule_id: str, start: str, end: str) -> dict:
    """Both tables' data-quality verdicts of the run for [start, end), as the validate step
    wrote them (pipeline.Staged.verdict), and whether their Data Docs exist."""
    from .pipeline import Staged, run_folder_name
    from .sources import TABLES

    folder = Path(staging) / rule_id / run_folder_name(start, end)
    out = {}
    for table in TABLES:
        files = Staged(folder, table)
        verdict = None
        if files.verdict.is_file():
            try:
                verdict = json.loads(files.verdict.read_text(encoding="utf-8"))["summary"]
            except (ValueError, KeyError, OSError):
                verdict = {"status": "unreadable", "summary": f"{files.verdict} is unreadable"}
        out[table] = {"verdict": verdict, "docs": (files.docs / "index.html").is_file(),
                      "folder": folder.name}
    return out


def ticket_link(destination: str, ticket_ref: str | None) -> str | None:
    """The ticket's page, for destinations that have one (Jira issue, ServiceNow incident),
    from the destination's configured URL; only http(s) links."""
    if not ticket_ref:
        return None
    from .destinations import DESTINATIONS

    factory = DESTINATIONS.get(destination)
    if destination not in ("jira", "servicenow") or factory is None:
        return None
    try:
        base = (factory.resolve(None).get("url") or "").rstrip("/")
    except UsageError:
        return None
    if not base.startswith(("https://", "http://")):
        return None
    if destination == "jira":
        return f"{base}/browse/{quote(ticket_ref, safe='')}"
    table = factory.resolve(None).get("table") or "incident"
    return (f"{base}/nav_to.do?uri={quote(table, safe='')}.do%3Fsysparm_query%3Dnumber%3D"
            f"{quote(ticket_ref, safe='')}")
