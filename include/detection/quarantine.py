"""Per-run quarantine files: every unreadable record with its table, place and reason, and
every record kept after a repair ("kept": true, e.g. invalid UTF-8 replaced by U+FFFD)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd

from . import storage

# Readers hand over valid Unicode, but the file must never be the thing that fails a run: a lone
# surrogate is written as its JSON escape (still valid JSON, and UTF-8 on disk).
_SURROGATE = re.compile("[\ud800-\udfff]")


def write(scans, folder, end) -> Path | str | None:
    """Write all quarantined records of a run to `folder/quarantine-<end>.jsonl` (atomically);
    returns where (a Path for a folder given as a Path, else the path or URL as text: storage),
    or None when nothing was quarantined."""
    records = [r for s in scans for r in s.quarantine]
    if not records:
        return None
    name = f"quarantine-{pd.Timestamp(end).strftime('%Y%m%dT%H%M%SZ')}.jsonl"
    text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
    url = storage.write_text(
        storage.join(folder, name), _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    )
    return Path(url) if isinstance(folder, os.PathLike) else url
