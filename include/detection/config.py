"""Where things live, from the environment (never secrets in code).

DETECTION_HOME          base folder for local state (default: <repo>/.data)
DETECTION_SOURCE        folder with the tables (default: $DETECTION_HOME/lake, the demo lake)
DETECTION_STAGING       base path for per-run intermediate Parquet (default: $DETECTION_HOME/staging)
DETECTION_ALERT_STORE   alert store: a path, sqlite:///path, postgresql://... URL, or a connection id
                        (Airflow connection, or AIRFLOW_CONN_<ID>) (default: $DETECTION_HOME/alerts.db)
DETECTION_TICKET_DIR    the `file` destination's folder (default: $DETECTION_HOME/tickets)
DETECTION_DESTINATIONS  comma-separated destination names: file, webhook, jira, servicenow (default:
                        file); their settings: include/detection/destinations/
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def home() -> Path:
    return Path(os.environ.get("DETECTION_HOME") or REPO / ".data")


def source() -> Path:
    return Path(os.environ.get("DETECTION_SOURCE") or home() / "lake")


def staging() -> Path:
    return Path(os.environ.get("DETECTION_STAGING") or home() / "staging")


def alert_store() -> str:
    return os.environ.get("DETECTION_ALERT_STORE") or str(home() / "alerts.db")


def ticket_dir() -> Path:
    return Path(os.environ.get("DETECTION_TICKET_DIR") or home() / "tickets")


def destinations() -> list[str]:
    names = os.environ.get("DETECTION_DESTINATIONS") or "file"
    return [n.strip() for n in names.split(",") if n.strip()]
