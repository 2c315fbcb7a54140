"""Reading AzureActivity and BehaviorAnalytics for a query period, from a folder of exports.

A source folder holds each table as one of:
  <Table>.jsonl   JSON Lines, Log Analytics column names, ISO 8601 UTC datetimes (up to 7 digits),
                  dynamic columns as JSON objects or JSON text;
  <Table>/        Parquet files, possibly Hive-partitioned (date=YYYY-MM-DD/part-0.parquet), with
                  TimeGenerated a timestamp column (UTC when naive) and dynamic columns as JSON text;
  <Table>.csv     a Log Analytics portal export ("TimeGenerated [UTC]" headers).
Only the columns the rule reads are loaded, and only rows with TimeGenerated in [start, end).
Records that cannot be read go to `quarantine` with a reason; they are never dropped silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from .correlation import PUSHDOWN
from .errors import SourceError

TABLES = ("AzureActivity", "BehaviorAnalytics")
STRING, DATETIME, DYNAMIC = "string", "datetime", "dynamic"
# Columns stored as strings that may arrive as JSON objects (Authorization is a JSON blob in a
# string column; an export may have expanded it): they are kept as compact JSON text.
JSON_TEXT_STRINGS = {"Authorization"}


@dataclass
class Scan:
    """One table's rows for the window, plus what the scan saw on the way."""

    table: str
    frame: pd.DataFrame
    source: str
    format: str
    rows_read: int = 0            # records in the source, all times
    rows_in_window: int = 0       # readable records with TimeGenerated in [start, end)
    missing_columns: list[str] = field(default_factory=list)
    quarantine: list[dict] = field(default_factory=list)
    hourly: dict[str, int] = field(default_factory=dict)  # "YYYY-MM-DDTHH" -> rows in window
    newest: str | None = None     # newest TimeGenerated in the window (ISO)
    source_types: dict[str, str] = field(default_factory=dict)  # column -> type as stored
    prefiltered: bool = False     # frame holds only the rows the query's first `where` keeps

    @property
    def quarantined(self) -> int:
        return sum(q.get("count", 1) for q in self.quarantine)

    def summary(self) -> dict:
        return {
            "table": self.table, "format": self.format, "rows_read": self.rows_read,
            "rows_in_window": self.rows_in_window, "candidates": len(self.frame),
            "quarantined": self.quarantined, "missing_columns": self.missing_columns,
            "newest": self.newest, "hourly": self.hourly, "source_types": self.source_types,
        }


def locate(source: Path, table: str) -> tuple[str, Path]:
    source = Path(source)
    candidates = [("jsonl", source / f"{table}.jsonl"), ("parquet", source / table),
                  ("csv", source / f"{table}.csv")]
    for fmt, path in candidates:
        if path.exists():
            return fmt, path
    raise SourceError(table, f"not found in {source} (looked for {table}.jsonl, {table}/ of "
                             f"Parquet files, {table}.csv)")


def read_table(source: Path, table: str, start: datetime, end: datetime,
               columns: dict[str, str], prefilter: bool = True) -> Scan:
    """Rows of `table` with TimeGenerated in [start, end), restricted to `columns` (name -> type).

    With `prefilter`, only rows that pass the query's first `where` on this table are kept
    (see correlation.PUSHDOWN); the counts and hourly profile still cover every row in the window.
    """
    fmt, path = locate(source, table)
    reader = {"jsonl": _read_jsonl, "parquet": _read_parquet, "csv": _read_csv}[fmt]
    rule = PUSHDOWN.get(table) if prefilter else None
    scan = reader(path, table, pd.Timestamp(start), pd.Timestamp(end), columns, rule)
    # A column absent from the source is absent from the frame: the quality gate names it.
    scan.frame = scan.frame.drop(columns=scan.missing_columns).reset_index(drop=True)
    scan.prefiltered = rule is not None
    return scan


def _keep(frame: pd.DataFrame, rule) -> pd.DataFrame:
    """The pushdown predicate on a frame (same semantics as the query's step)."""
    if rule is None or frame.empty or rule[0] not in frame:
        return frame
    column, op, literal = rule
    values = frame[column].fillna("").astype("str")
    return frame[values.str.lower() == literal.lower()] if op == "=~" else frame[values == literal]


def _arrow_keep(rule, names):
    import pyarrow.compute as pc

    if rule is None or rule[0] not in names:
        return pc.scalar(True)
    column, op, literal = rule
    if op == "=~":  # the literal is ASCII, so ASCII folding decides equality exactly
        return pc.ascii_lower(pc.field(column)) == literal.lower()
    return pc.field(column) == literal


# --- JSON Lines and CSV: record by record, so one bad line is quarantined, not fatal --------------

def _read_jsonl(path: Path, table: str, start, end, columns, rule) -> Scan:
    values: dict[str, list] = {c: [] for c in columns}
    seen: set[str] = set()
    rows: list[int] = []
    quarantine: list[dict] = []
    read = 0
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            read += 1
            try:
                record = json.loads(line)
            except ValueError as exc:
                quarantine.append(_bad(table, path, lineno, f"not JSON ({exc.msg})", line))
                continue
            if not isinstance(record, dict):
                quarantine.append(_bad(table, path, lineno,
                                       f"not a JSON object (a {type(record).__name__})", line))
                continue
            problem = _append_record(record, columns, values, seen)
            if problem:
                quarantine.append(_bad(table, path, lineno, problem, line))
                continue
            rows.append(lineno)
    return _finish(table, path, "jsonl", values, rows, seen, columns, quarantine, read, start, end,
                   rule, raw_of=lambda n: _line(path, n))


def _read_csv(path: Path, table: str, start, end, columns, rule) -> Scan:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.columns = [c.removesuffix(" [UTC]").strip() for c in frame.columns]
    values = {c: ([None if v == "" else v for v in frame[c]] if c in frame else [None] * len(frame))
              for c in columns}
    rows = list(range(2, len(frame) + 2))  # spreadsheet line numbers: header is line 1
    return _finish(table, path, "csv", values, rows, set(frame.columns), columns, [], len(frame),
                   start, end, rule, raw_of=lambda n: frame.iloc[n - 2].to_json())


def _append_record(record: dict, columns, values, seen) -> str | None:
    """Type-check one record's needed fields and append them; returns a reason when it can't."""
    row = {}
    for col, kind in columns.items():
        v = record.get(col)
        if col in record:
            seen.add(col)
        if v is None or kind == DATETIME:
            row[col] = v
        elif kind == DYNAMIC:
            row[col] = v if isinstance(v, str) else json.dumps(v, separators=(",", ":"),
                                                                ensure_ascii=False)
        elif isinstance(v, str):
            row[col] = v
        elif col in JSON_TEXT_STRINGS and isinstance(v, (dict, list)):
            row[col] = json.dumps(v, separators=(",", ":"), ensure_ascii=False)
        else:
            return f"wrong type: {col} is a JSON {type(v).__name__}, expected a string"
    for col, v in row.items():
        values[col].append(v)
    return None


def _finish(table, path, fmt, values, rows, seen, columns, quarantine, read, start, end, rule,
            raw_of):
    frame = pd.DataFrame({c: pd.Series(values[c], dtype=object) for c in columns})
    frame["_row"] = rows
    raw_time = frame["TimeGenerated"]
    parsed = _parse_times(raw_time)
    bad = parsed.isna()
    for i in frame.index[bad]:
        reason = "null TimeGenerated" if raw_time[i] is None else \
            f"unparseable TimeGenerated {raw_time[i]!r}"
        quarantine.append(_bad(table, path, int(frame.at[i, "_row"]), reason, raw_of(frame.at[i, "_row"])))
    frame = frame.assign(TimeGenerated=parsed)[~bad]
    frame = frame[(frame["TimeGenerated"] >= start) & (frame["TimeGenerated"] < end)]
    times = frame["TimeGenerated"]
    frame = _typed(_keep(frame.drop(columns="_row"), rule), columns)
    missing = [c for c in columns if c not in seen] if read else []
    quarantine.sort(key=lambda q: q["line"])
    types = {c: "string" if columns[c] != DATETIME else "timestamp" for c in columns if c in seen}
    return Scan(table, frame, str(path), fmt, read, len(times), missing, quarantine,
                _hourly(times), _newest(times), types)


def _parse_times(raw: pd.Series) -> pd.Series:
    """ISO 8601 to datetime64[ns, UTC] (7 fractional digits kept); naive means UTC."""
    text = raw.where(raw.map(lambda v: isinstance(v, str)), None)
    parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    if parsed.isna().any():  # the portal's CSV format: 11/1/2026, 3:04:05.123 PM
        alt = pd.to_datetime(text, format="%m/%d/%Y, %I:%M:%S.%f %p", utc=True, errors="coerce")
        parsed = parsed.fillna(alt)
    return _ticks(parsed)


def _ticks(times: pd.Series) -> pd.Series:
    """Kusto datetimes are 100 ns ticks: finer digits are truncated as ingestion does."""
    return times.dt.as_unit("ns").dt.floor("100ns")


def _typed(frame: pd.DataFrame, columns) -> pd.DataFrame:
    out = {}
    for col, kind in columns.items():
        out[col] = frame[col] if kind == DATETIME else frame[col].astype("str")
    return pd.DataFrame(out, index=frame.index)


def _bad(table, path, line, reason, raw) -> dict:
    return {"table": table, "source": str(path), "line": line, "reason": reason,
            "raw": raw.rstrip("\n") if isinstance(raw, str) else raw}


def _line(path: Path, n: int) -> str:
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        for i, line in enumerate(fh, 1):
            if i == n:
                return line
    return ""


# --- Parquet: projection and the window pushed down to the scan ----------------------------------

def _read_parquet(path: Path, table: str, start, end, columns, rule) -> Scan:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    try:
        dataset = ds.dataset(path, format="parquet", partitioning="hive",
                             ignore_prefixes=[".", "_"], exclude_invalid_files=True)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceError(table, f"cannot read Parquet folder {path}: {exc}") from None
    dataset = _normalised(dataset, path, columns)
    names = set(dataset.schema.names)
    missing = [c for c in columns if c not in names]
    types = {c: _kind(dataset.schema.field(c).type) for c in columns if c in names}
    if "TimeGenerated" in missing:
        return Scan(table, _typed(pd.DataFrame({c: [] for c in columns}), columns), str(path),
                    "parquet", dataset.count_rows(), 0, missing, [], source_types=types)
    tg_type = dataset.schema.field("TimeGenerated").type
    if not pa.types.is_timestamp(tg_type):
        raise SourceError(table, f"is {tg_type} in {path}, expected a timestamp", "TimeGenerated")
    ns = pa.timestamp("ns", tz=tg_type.tz)
    tg = pc.field("TimeGenerated").cast(ns)
    window = ((tg >= _bound(start, tg_type)) & (tg < _bound(end, tg_type))
              & _partition_prune(dataset.schema, start, end))
    # The window's profile reads one narrow column; the candidates read the rule's columns only
    # for rows that pass the pushed-down `where` (row groups are skipped on their statistics).
    times = dataset.to_table(columns=["TimeGenerated"], filter=window)["TimeGenerated"]
    present = [c for c in columns if c in names]
    table_ = dataset.to_table(columns=present, filter=window & _arrow_keep(rule, names))
    quarantine = []
    null_times = dataset.count_rows(filter=pc.field("TimeGenerated").is_null())
    if null_times:
        quarantine.append({"table": table, "source": str(path), "line": None,
                           "reason": "null TimeGenerated", "raw": None, "count": null_times})
    frame = table_.to_pandas()
    for c in missing:
        frame[c] = None
    frame["TimeGenerated"] = _ticks(pd.to_datetime(frame["TimeGenerated"], utc=True))
    for c, kind in columns.items():
        if kind == DYNAMIC and c in present and types[c] != "string":
            frame[c] = frame[c].map(lambda v: None if v is None else
                                    json.dumps(v, separators=(",", ":"), ensure_ascii=False,
                                               default=str))
    times = _ticks(pd.to_datetime(times.to_pandas(), utc=True)) if len(times) else \
        pd.Series([], dtype="datetime64[ns, UTC]")
    return Scan(table, _typed(frame, columns), str(path), "parquet", dataset.count_rows(),
                len(times), missing, quarantine, _hourly(times), _newest(times), types)


def _bound(ts: pd.Timestamp, tg_type):
    """A window bound as a scalar of the column's own type (naive columns hold UTC)."""
    import pyarrow as pa

    ts = ts.tz_convert("UTC").as_unit("ns")
    return pa.scalar(ts if tg_type.tz else ts.tz_localize(None), type=pa.timestamp("ns", tz=tg_type.tz))


def _kind(arrow_type) -> str:
    import pyarrow as pa

    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    return str(arrow_type)


def _normalised(dataset, path, columns):
    """Read string-like columns (dictionary, large, view, all-null) as plain strings, so every
    file of the folder and every writer's choice of encoding look the same to the scan."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    fields, changed = [], False
    for f in dataset.schema:
        kind = f.type
        if f.name in columns and f.name != "TimeGenerated":
            if pa.types.is_dictionary(kind):
                kind = kind.value_type
            if (pa.types.is_large_string(kind) or pa.types.is_null(kind)
                    or getattr(pa.types, "is_string_view", lambda t: False)(kind)):
                kind = pa.string()
        changed |= kind != f.type
        fields.append(pa.field(f.name, kind))
    if not changed:
        return dataset
    return ds.dataset(path, schema=pa.schema(fields), format="parquet", partitioning="hive",
                      ignore_prefixes=[".", "_"], exclude_invalid_files=True)


def _partition_prune(schema, start, end):
    """Skip Hive `date=` partitions far outside the window (a day of slack each side, in case the
    export partitions by ingestion date). TimeGenerated is still filtered exactly."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if "date" not in schema.names:
        return pc.scalar(True)
    lo = (start - pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    hi = (end + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    kind = schema.field("date").type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return (pc.field("date") >= lo) & (pc.field("date") <= hi)
    if pa.types.is_date(kind):
        return (pc.field("date") >= pa.scalar(pd.Timestamp(lo).date())) & \
               (pc.field("date") <= pa.scalar(pd.Timestamp(hi).date()))
    return pc.scalar(True)


def _hourly(times: pd.Series) -> dict[str, int]:
    if times.empty:
        return {}
    counts = times.dt.floor("h").value_counts().sort_index()
    return {ts.strftime("%Y-%m-%dT%H"): int(n) for ts, n in counts.items()}


def _newest(times: pd.Series) -> str | None:
    return None if times.empty else times.max().isoformat()
