"""Writing and reading result rows: JSON Lines (Kusto's JSON shapes) or Parquet."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .correlation import OUTPUT_COLUMNS
from .errors import UsageError
from .files import atomic_path

DATETIME_COLUMNS = ("StartTime", "EndTime", "UEBAEventTime")
DYNAMIC_COLUMNS = ("UEBAActivityInsights", "UEBAUsersInsights")


def format_datetime(ts: pd.Timestamp) -> str:
    """As Kusto writes datetimes: `2026-03-10T18:00:00Z`, or 7 fractional digits when present."""
    ts = ts.tz_convert("UTC")
    base = ts.strftime("%Y-%m-%dT%H:%M:%S")
    ticks = (ts.microsecond * 1000 + ts.nanosecond) // 100
    return f"{base}.{ticks:07d}Z" if ticks else f"{base}Z"


def to_records(frame: pd.DataFrame, columns=OUTPUT_COLUMNS) -> list[dict]:
    """Result rows as JSON-ready dicts with exactly `columns`, in order."""
    records = []
    for row in frame[list(columns)].itertuples(index=False, name=None):
        rec = {}
        for col, value in zip(columns, row):
            if col in DATETIME_COLUMNS:
                value = format_datetime(value)
            rec[col] = value
        records.append(rec)
    return records


def write(frame: pd.DataFrame, out: Path, columns=OUTPUT_COLUMNS) -> None:
    """Write the result atomically (temp file, then rename): a reader never sees half a file."""
    out = Path(out)
    if out.suffix not in (".jsonl", ".parquet"):
        raise UsageError(f"unsupported output {out} (use .jsonl or .parquet)")
    with atomic_path(out) as tmp:
        if out.suffix == ".jsonl":
            with open(tmp, "w", encoding="utf-8") as fh:
                for rec in to_records(frame, columns):
                    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        else:
            import pyarrow.parquet as pq

            pq.write_table(to_arrow(frame, columns), tmp)


def to_arrow(frame: pd.DataFrame, columns=OUTPUT_COLUMNS):
    """Parquet shape: datetimes as timestamp[ns, UTC], dynamic columns as JSON text."""
    import pyarrow as pa

    data = {}
    for col in columns:
        if col in DATETIME_COLUMNS:
            data[col] = pa.array(frame[col].dt.as_unit("ns"), pa.timestamp("ns", tz="UTC"))
        elif col in DYNAMIC_COLUMNS:
            data[col] = pa.array(
                [None if v is None else json.dumps(v, ensure_ascii=False) for v in frame[col]],
                pa.string(),
            )
        else:
            data[col] = pa.array(frame[col].astype(object).tolist(), pa.string())
    return pa.table(data)


def load(path: Path) -> pd.DataFrame:
    """A result Parquet file back as a frame shaped like correlate()'s output."""
    import pyarrow.parquet as pq

    return from_arrow(pq.read_table(path))


def from_arrow(table) -> pd.DataFrame:
    """to_arrow's shape back as correlate()'s (dynamic columns parsed from their JSON text)."""
    frame = table.to_pandas()
    for col in DYNAMIC_COLUMNS:
        frame[col] = pd.Series(
            [None if pd.isna(v) else json.loads(v) for v in frame[col]],
            index=frame.index,
            dtype=object,
        )
    return frame


def read(path: Path) -> list[dict]:
    """Read a result file back as records (the JSON Lines shape), for tests and the CLI."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return to_records(load(path))
