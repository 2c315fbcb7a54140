"""`file`: one JSON file per ticket in a folder (DETECTION_TICKET_DIR: a path, or a URL of a
folder on object storage, `memory://`, `file://`: storage); the ticket reference is the file
name. The file is named by the alert id, so a re-delivery rewrites the same ticket, never a
second one; the write is atomic (temp file or key, then rename).

The reference comes back from the alert store, so it is checked before it names a file: one plain
file name in the folder, never a path (`/`, `\\`, `..`), a dot-name (our temporary files) or
control characters; anything else is refused (PermanentError: that alert stays pending, the others
go on). A symlink at the target is replaced by the ticket, its target left alone (`files`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from .. import config, storage
from ..text import printable
from .base import Delivery, Destination, PermanentError

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+=-]{0,200}")


def ticket_name(ref: str) -> str:
    """`ref` if it is one safe file name, else PermanentError saying why."""
    ref = str(ref)
    if "/" in ref or "\\" in ref or os.sep in ref or (os.altsep and os.altsep in ref):
        why = "contains a path separator"
    elif ".." in ref:
        why = "contains '..'"
    elif not _NAME.fullmatch(ref):
        why = "is not a plain file name (letters, digits, _ . @ + = -, not starting with a dot)"
    else:
        return ref
    raise PermanentError(f"file: refusing ticket reference {printable(ref)[:80]!r}: it {why}")


class FileTickets(Destination):
    name = "file"

    def __init__(
        self, folder: Path | str | None = None, settings: dict | None = None, connection: Any = None
    ):
        super().__init__(settings, connection)
        self.folder = os.fspath(folder or self.settings.get("folder") or config.ticket_dir())

    @classmethod
    def resolve(cls, settings: dict | None, connection: Any = None) -> dict:
        return dict(settings or {})

    def max_duration(self) -> float:
        return 60.0

    def deliver(self, alert: dict, ticket_ref: str | None) -> Delivery:
        ref = ticket_name(ticket_ref or f"{alert['id']}.json")
        target = storage.join(self.folder, ref)
        existed = storage.is_file(target)
        storage.write_text(target, json.dumps(alert, indent=2, ensure_ascii=False))
        return Delivery(ref, "updated" if existed else "created")
