"""`file`: one JSON file per ticket in a folder (DETECTION_TICKET_DIR); the ticket reference is
the file name. The file is named by the alert id, so a re-delivery rewrites the same ticket,
never a second one; the write is atomic (temp file, then rename)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import config
from ..files import write_text
from .base import Delivery, Destination


class FileTickets(Destination):
    name = "file"

    def __init__(self, folder: Path | None = None, settings: dict | None = None, connection: Any = None):
        super().__init__(settings, connection)
        self.folder = Path(folder or self.settings.get("folder") or config.ticket_dir())

    @classmethod
    def resolve(cls, settings: dict | None, connection: Any = None) -> dict:
        return dict(settings or {})

    def max_duration(self) -> float:
        return 60.0

    def deliver(self, alert: dict, ticket_ref: str | None) -> Delivery:
        self.folder.mkdir(parents=True, exist_ok=True)
        ref = ticket_ref or f"{alert['id']}.json"
        target = self.folder / ref
        existed = target.exists()
        write_text(target, json.dumps(alert, indent=2, ensure_ascii=False))
        return Delivery(ref, "updated" if existed else "created")
