"""Per-run quarantine files: every unreadable record with its table, place and reason."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd


def write(scans, folder: Path, end) -> Path | None:
    """Write all quarantined records of a run to `folder/quarantine-<end>.jsonl` (atomically);
    returns the path, or None when nothing was quarantined."""
    records = [r for s in scans for r in s.quarantine]
    if not records:
        return None
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"quarantine-{pd.Timestamp(end).strftime('%Y%m%dT%H%M%SZ')}.jsonl"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, path)
    return path
