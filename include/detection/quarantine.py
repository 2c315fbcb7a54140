"""Per-run quarantine files: every unreadable record with its table, place and reason."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .files import write_text


def write(scans, folder: Path, end) -> Path | None:
    """Write all quarantined records of a run to `folder/quarantine-<end>.jsonl` (atomically);
    returns the path, or None when nothing was quarantined."""
    records = [r for s in scans for r in s.quarantine]
    if not records:
        return None
    path = Path(folder) / f"quarantine-{pd.Timestamp(end).strftime('%Y%m%dT%H%M%SZ')}.jsonl"
    return write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n"
                                    for r in records))
