"""What every source hands over: a `Scan` of one table for one window, and the frame helpers the
readers share (Kusto's 100 ns ticks, the rule's column types, the hourly profile)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .. import kql

TABLES = ("AzureActivity", "BehaviorAnalytics")
DATETIME, DYNAMIC = "datetime", "dynamic"
# Columns stored as strings that may arrive as JSON objects (Authorization is a JSON blob in a
# string column; an export may have expanded it): they are kept as compact JSON text.
JSON_TEXT_STRINGS = {"Authorization"}
REPAIRED = "invalid UTF-8 replaced by U+FFFD (row kept)"


@dataclass
class Scan:
    """One table's rows for the window, plus what the scan saw on the way."""

    table: str
    frame: pd.DataFrame
    source: str
    format: str
    rows_read: int = 0  # records in the source, all times
    rows_in_window: int = 0  # readable records with TimeGenerated in [start, end)
    missing_columns: list[str] = field(default_factory=list)
    # unreadable records, and (with "kept": True) records kept after a repair
    quarantine: list[dict] = field(default_factory=list)
    hourly: dict[str, int] = field(default_factory=dict)  # "YYYY-MM-DDTHH" -> rows in window
    newest: str | None = None  # newest TimeGenerated in the window (ISO)
    source_types: dict[str, str] = field(default_factory=dict)  # column -> type as stored

    @property
    def quarantined(self) -> int:
        """Records not read (what the quarantine-ratio check judges)."""
        return sum(q.get("count", 1) for q in self.quarantine if not q.get("kept"))

    @property
    def repaired(self) -> int:
        """Records read after replacing invalid text (read like any other, not lost)."""
        return sum(q.get("count", 1) for q in self.quarantine if q.get("kept"))

    def summary(self) -> dict:
        return {
            "table": self.table,
            "format": self.format,
            "rows_read": self.rows_read,
            "rows_in_window": self.rows_in_window,
            "candidates": len(self.frame),
            "quarantined": self.quarantined,
            "repaired": self.repaired,
            "missing_columns": self.missing_columns,
            "newest": self.newest,
            "hourly": self.hourly,
            "source_types": self.source_types,
        }


def _keep(frame: pd.DataFrame, rules) -> pd.DataFrame:
    """The pushed-down predicates (correlation.PUSHDOWN) on a frame."""
    for column, op, literal in rules or ():
        if frame.empty or column not in frame:
            continue
        values = frame[column].fillna("").astype("str")
        if op == "=~":
            frame = frame[values.str.lower() == literal.lower()]
        elif op == "==":
            frame = frame[values == literal]
        else:  # may_hold
            frame = frame[kql.may_hold(values, *literal)]
    return frame


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


def _hourly(times: pd.Series) -> dict[str, int]:
    if times.empty:
        return {}
    counts = times.dt.floor("h").value_counts().sort_index()
    return {ts.strftime("%Y-%m-%dT%H"): int(n) for ts, n in counts.items()}


def _newest(times: pd.Series) -> str | None:
    return None if times.empty else times.max().isoformat()
