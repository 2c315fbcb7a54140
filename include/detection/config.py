"""Where things live, from the environment (never secrets in code).

DETECTION_HOME          base folder for local state (default: <repo>/.data)
DETECTION_SOURCE        where the tables are (default: $DETECTION_HOME/lake, the demo lake): a
                        folder, a file://, memory://, abfs://, az://, s3://, gs:// URL of one, or
                        loganalytics://<workspace-id>[,...] or kusto://<host>/<database>
                        (include/detection/sources/); a SAS token in its query is masked
DETECTION_STAGING       base of per-run intermediate Parquet, verdicts and Data Docs: a folder or a
                        file://, s3://, abfs://, az://, gs://, memory:// URL (default:
                        $DETECTION_HOME/staging); no credentials in it (storage.py)
DETECTION_ALERT_STORE   alert store: a path, sqlite:///path, postgresql://... URL, or a
                        connection id (Airflow connection, or AIRFLOW_CONN_<ID>) (default:
                        $DETECTION_HOME/alerts.db)
DETECTION_TICKET_DIR    the `file` destination's folder, a folder or URL as DETECTION_STAGING
                        (default: $DETECTION_HOME/tickets)
DETECTION_CACHE         the scan cache of Parquet source files (sources/cache.py): a folder
                        (default: $DETECTION_HOME/cache, beside staging), or off
DETECTION_DESTINATIONS  comma-separated destination names: file, webhook, jira, servicenow (default:
                        file); their settings: include/detection/destinations/
"""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def home() -> Path:
    return Path(os.environ.get("DETECTION_HOME") or REPO / ".data")


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")


def source() -> Path | str:
    """A folder as a Path; a URL as the text given (a Path would merge its `//`). Credentials a
    URL carries (a SAS token's `sig`) are registered with connections.redact first."""
    value = os.environ.get("DETECTION_SOURCE")
    if not value:
        return home() / "lake"
    if not _URL.match(value):
        return Path(value)
    from .connections import register_url

    register_url(value)
    return value


def staging() -> Path | str:
    """Where runs stage their files: a folder as a Path, a URL (file://, s3://, abfs://,
    memory://: storage) as the text given, which the DAG's tasks pass to each other."""
    return _location(os.environ.get("DETECTION_STAGING"), "staging")


_OFF = {"off", "no", "none", "false", "0"}


def cache() -> Path | str | None:
    """The scan cache's folder: a Path, or a URL as the text given (as staging); None when
    DETECTION_CACHE says off."""
    value = (os.environ.get("DETECTION_CACHE") or "").strip()
    if value.lower() in _OFF:
        return None
    return _location(value, "cache")


def alert_store() -> str:
    return os.environ.get("DETECTION_ALERT_STORE") or str(home() / "alerts.db")


def ticket_dir() -> Path | str:
    """The `file` destination's folder: a Path, or a URL as the text given (as staging)."""
    return _location(os.environ.get("DETECTION_TICKET_DIR"), "tickets")


def _location(value: str | None, default: str) -> Path | str:
    if not value:
        return home() / default
    return value if _URL.match(value) else Path(value)


def destinations() -> list[str]:
    names = os.environ.get("DETECTION_DESTINATIONS") or "file"
    return [n.strip() for n in names.split(",") if n.strip()]
