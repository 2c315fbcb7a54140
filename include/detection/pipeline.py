"""One detection run over a query window: extract both tables, validate, correlate.

The CLI and the DAG call the same functions; the DAG just runs them as separate tasks with
Parquet files in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pandas as pd

from . import correlation, quality, sources
from .errors import UsageError
from .rule import Rule, load_rule


def window(end, period: timedelta) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The query period as a half-open UTC interval [end - period, end)."""
    try:
        end = pd.Timestamp(end)
    except (ValueError, TypeError):
        raise UsageError(f"not a timestamp: {end!r} (use ISO 8601, e.g. 2026-11-01T00:00:00Z)") from None
    end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
    return end - pd.Timedelta(period), end


def extract(source: Path, table: str, start, end, rule: Rule | None = None) -> sources.Scan:
    rule = rule or load_rule()
    return sources.read_table(Path(source), table, start, end, rule.inputs[table])


def validate(scan: sources.Scan, start, end, rule: Rule | None = None) -> quality.TableQuality:
    rule = rule or load_rule()
    return quality.validate(scan.table, scan.frame, rule.inputs[scan.table], start, end)


@dataclass
class Detection:
    start: pd.Timestamp
    end: pd.Timestamp
    scans: dict[str, sources.Scan]
    quality: dict[str, quality.TableQuality]
    result: pd.DataFrame


def detect(source: Path, end, period: timedelta | None = None, rule: Rule | None = None) -> Detection:
    """Extract, gate and correlate one window; raises DataQualityError before correlating."""
    rule = rule or load_rule()
    start, end = window(end, period or rule.query_period)
    scans = {t: extract(source, t, start, end, rule) for t in sources.TABLES}
    checks = {t: validate(s, start, end, rule) for t, s in scans.items()}
    result = correlation.correlate(scans["AzureActivity"].frame, scans["BehaviorAnalytics"].frame)
    return Detection(start, end, scans, checks, result)


# --- Staging: each DAG run writes its own interval-keyed Parquet files --------------------------

def run_folder(base: Path, rule: Rule, start, end) -> Path:
    """`<base>/<rule id>/<start>--<end>/`: one folder per interval, so re-runs overwrite their
    own files and overlapping windows never share one."""
    fmt = "%Y%m%dT%H%M%SZ"
    return Path(base) / rule.id / f"{pd.Timestamp(start).strftime(fmt)}--{pd.Timestamp(end).strftime(fmt)}"


def stage(frame: pd.DataFrame, path: Path) -> Path:
    """Write a frame as Parquet atomically (temp file, then rename)."""
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
    os.replace(tmp, path)
    return path


def load_stage(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pandas()
