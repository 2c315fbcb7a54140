"""What the alerts console shows, without Airflow: filters from a query string, the Data Docs
file a request may read, the link of a ticket, a run's data-quality summary. The UI plugin
(plugins/detections_plugin.py) adds the Airflow login and the pages.
"""

from __future__ import annotations

import json
import mimetypes
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote

from . import storage
from .errors import UsageError

TICKET_STATES = ("delivered", "pending", "failing")
QUALITY_STATES = ("passed", "warnings", "failed")
SEVERITIES = ("High", "Medium", "Low", "Informational")
TEXT_FILTERS = ("user", "vm", "subscription")
PAGE_SIZES = (25, 50, 100, 200)
# A run folder's name (pipeline.run_folder), with `~workspace=<id>` for one workspace's folder
# inside it (pipeline.workspace_folder): the only shapes a Data Docs URL may name. `~` and not
# `/`, so the Data Docs' own relative links keep working under one path segment.
RUN_FOLDER = re.compile(r"^\d{8}T\d{6}Z--\d{8}T\d{6}Z(~workspace=[A-Za-z0-9._-]+)?$")


def parse_filters(params: dict) -> dict:
    """Query parameters as store.search filters; a bad value is a UsageError naming it."""
    out: dict = {}
    for key in TEXT_FILTERS:
        value = (params.get(key) or "").strip()
        if len(value) > 200:
            raise UsageError(f"{key}: at most 200 characters")
        if value:
            out[key] = value
    for key, allowed in (
        ("severity", SEVERITIES),
        ("ticket", TICKET_STATES),
        ("data_quality", QUALITY_STATES),
    ):
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
        raise UsageError(
            f"{name}: not a date or time ({text!r}; e.g. 2026-10-31 or 2026-10-31T10:00)"
        ) from None
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


@dataclass(frozen=True)
class DocsPage:
    """A Data Docs file's bytes, read from the staging area (a path or URL: storage)."""

    name: str
    data: bytes

    @property
    def media_type(self) -> str:
        return mimetypes.guess_type(self.name)[0] or "application/octet-stream"


# a Data Docs file's path inside its folder: plain segments, never `.`, `..`, empty or `\`
_DOCS_SEGMENT = re.compile(r"^(?!\.{1,2}$)[^/\\\x00-\x1f]+$")


def docs_file(staging, rule_id: str, folder: str, table: str, path: str) -> DocsPage:
    """The Data Docs file a URL names, only inside that run's `data_docs/<table>/` folder (no
    `..`, no absolute path, no link out of it); FileNotFoundError otherwise. The staging area
    may be on another machine's storage, so the bytes are returned, not a path."""
    from .pipeline import Staged
    from .sources import TABLES

    if not RUN_FOLDER.match(folder) or table not in TABLES:
        raise FileNotFoundError(path)
    parts = (path or "index.html").split("/")
    if not all(_DOCS_SEGMENT.match(p) for p in parts):
        raise FileNotFoundError(path)
    root = Staged(storage.join(staging, rule_id, *folder.split("~")), table).docs
    local = storage.local_path(root)
    if local is not None:  # on this machine a symlink could still lead out of the folder
        top = local.resolve()
        target = top.joinpath(*parts).resolve()
        if not target.is_relative_to(top) or not target.is_file():
            raise FileNotFoundError(path)
        return DocsPage(target.name, target.read_bytes())
    try:
        return DocsPage(parts[-1], storage.read_bytes(storage.join(root, *parts)))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise FileNotFoundError(path) from None


def run_quality(staging, rule_id: str, start: str, end: str, workspace: str | None = None) -> dict:
    """Both tables' data-quality verdicts of the run for [start, end), as the validate step
    wrote them (pipeline.Staged.verdict), and whether their Data Docs exist: {label: {table,
    workspace, verdict, docs, folder}}. A run over several workspaces has a folder per workspace
    (`workspace` picks one, e.g. an alert's; otherwise each is listed, labelled
    `<table> (<workspace>)`)."""
    from .pipeline import Staged, run_folder_name, workspace_folder
    from .sources import TABLES

    name = run_folder_name(start, end)
    folder = storage.join(staging, rule_id, name)
    if workspace:
        places = [workspace_folder(workspace)]
    else:
        places = [None] + [d for d in storage.subfolders(folder) if d.startswith("workspace=")]
    out = {}
    for place in places:
        for table in TABLES:
            files = Staged(storage.join(folder, place) if place else folder, table)
            verdict = None
            try:
                verdict = json.loads(storage.read_text(files.verdict))["summary"]
            except FileNotFoundError:
                if place is None and len(places) > 1:
                    continue  # a run over workspaces has nothing at the top
            except (ValueError, KeyError, TypeError, OSError):
                verdict = {
                    "status": "unreadable",
                    "summary": f"{table}.validation.json of {name} is unreadable",
                }
            shown = place.removeprefix("workspace=") if place else None
            out[f"{table} ({shown})" if shown else table] = {
                "table": table,
                "workspace": shown,
                "verdict": verdict,
                "docs": storage.is_file(storage.join(files.docs, "index.html")),
                "folder": f"{name}~{place}" if place else name,
            }
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
    return (
        f"{base}/nav_to.do?uri={quote(table, safe='')}.do%3Fsysparm_query%3Dnumber%3D"
        f"{quote(ticket_ref, safe='')}"
    )
