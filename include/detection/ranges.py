"""Hunting over a range of windows in one process: the rule for every window ending at `first`,
`first + every`, ... up to and including `last`, as the DAG's scheduled runs would see them.

Each window's rows and gate verdict equal a `pipeline.detect` of that window alone, while each
stretch of time is read once. The rule looks back `period` (2 days) and runs every `every`
(1 day), so consecutive windows overlap and per-window scans read every day twice. Here the
time the windows cover is cut into slices of gcd(period, every) (a day), each slice is scanned
once per table, and a window's Scan is put together from its slices: its candidate rows, hourly
profile, newest row and counts are then exactly a scan of the window's own (the slices
partition it). Only the current window's slices are held, and the next window's new slice
while it is read (on a thread, beside this window's gate and correlation), so memory stays
that of about one window however long the range.

With the scan cache (sources/cache.py, on unless DETECTION_CACHE=off or --no-cache), a slice's
Parquet files are served from the pieces earlier runs or slices left, so a file is decoded once
across this range, the next range and the daily runs, until it changes.

JSON Lines and CSV files are read whole by every scan, whatever the window: for them one scan
without the pushed-down filters covers a chunk of windows (CHUNK_WINDOWS), and each window is cut
from it in memory with the readers' own helpers.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pandas as pd

from . import correlation, quality, results, sources
from .correlation import OUTPUT_COLUMNS
from .errors import DataQualityError, DetectionError, UsageError
from .files import atomic_path
from .pipeline import Detection, validate, window
from .rule import Rule, load_rule

WINDOW_END = "WindowEnd"
COLUMNS = [WINDOW_END, *OUTPUT_COLUMNS]
MAX_WINDOWS = 10_000  # a year of hourly windows; more is a typo in --every
MAX_SLICES = 48  # slices per window; finer (an odd --every) scans windows whole
CHUNK_WINDOWS = 14  # windows cut from one read of a whole-file table
LOOKAHEAD = 2  # slices past the next window whose cache pieces are built ahead
WHOLE_FILE_FORMATS = ("jsonl", "csv")


def window_ends(first, last, every: timedelta, period: timedelta) -> list[pd.Timestamp]:
    """Every window end from `first` to `last` inclusive, `every` apart (UsageError when the
    range is empty, upside down or absurdly fine)."""
    _, first = window(first, period)
    _, last = window(last, period)
    every = pd.Timedelta(every)
    if every <= pd.Timedelta(0):
        raise UsageError(f"--every {every} must be positive")
    if last < first:
        raise UsageError(f"--to {last.isoformat()} is before --from {first.isoformat()}")
    count = (last - first) // every + 1
    if count > MAX_WINDOWS:
        raise UsageError(
            f"{count} windows from {first.isoformat()} to {last.isoformat()} every "
            f"{every}: more than {MAX_WINDOWS} (use a longer --every)"
        )
    return [first + i * every for i in range(count)]


def span_text(span: timedelta) -> str:
    """A timespan as Kusto writes it: 1d, 12h, 90m, 30s."""
    seconds = pd.Timedelta(span).total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def slice_length(period: timedelta, every: timedelta) -> pd.Timedelta:
    """The longest slice that every window's start and end fall on: gcd(period, every)."""
    return pd.Timedelta(math.gcd(pd.Timedelta(period).value, pd.Timedelta(every).value), "ns")


# --- putting a window's Scan together from slices -------------------------------------------------


def merge_scans(table: str, parts: list[sources.Scan]) -> sources.Scan:
    """One Scan of a window from scans of consecutive slices that partition it: the rows,
    counts and hourly profile add up, the newest row is the newest of all, and what a reader
    reports for the whole source in every scan (records read from files, unreadable records,
    missing columns) is counted once."""
    first = parts[0]
    frames = [p.frame for p in parts if len(p.frame)]
    frame = (
        pd.concat(frames, ignore_index=True)
        if len(frames) > 1
        else (frames[0] if frames else parts[-1].frame).reset_index(drop=True)
    )
    hourly: dict[str, int] = {}
    for p in parts:
        for hour, n in p.hourly.items():
            hourly[hour] = hourly.get(hour, 0) + int(n)
    newest = max((pd.Timestamp(p.newest) for p in parts if p.newest), default=None)
    missing = list(dict.fromkeys(c for p in parts for c in p.missing_columns))
    # Files report all their records in every scan; a service only what it returned.
    per_window = all(p.rows_read == p.rows_in_window for p in parts)
    rows_read = sum(p.rows_read for p in parts) if per_window else max(p.rows_read for p in parts)
    return sources.Scan(
        table,
        frame,
        first.source,
        first.format,
        rows_read,
        sum(p.rows_in_window for p in parts),
        missing,
        merge_quarantine(parts),
        dict(sorted(hourly.items())),
        newest.isoformat() if newest is not None else None,
        {k: v for p in parts for k, v in p.source_types.items()},
    )


def merge_quarantine(parts) -> list[dict]:
    """The quarantine of scans of disjoint slices: a record with a place (file and line) or a
    source-wide count (null TimeGenerated in the Parquet footers) is the same in every scan
    and listed once; a count of repaired rows without a line belongs to its slice's rows and
    adds up."""
    out: list[dict] = []
    seen: set[str] = set()
    repaired: dict[tuple, dict] = {}
    for p in parts:
        for record in p.quarantine:
            if record.get("line") is None and record.get("kept"):
                key = (record.get("source"), record.get("column"), record.get("reason"))
                if key in repaired:
                    repaired[key]["count"] = repaired[key].get("count", 1) + record.get("count", 1)
                else:
                    repaired[key] = dict(record)
                    out.append(repaired[key])
                continue
            identity = json.dumps(record, sort_keys=True, default=str)
            if identity not in seen:
                seen.add(identity)
                out.append(record)
    return out


def _cut(table: str, whole: sources.Scan, columns: dict, start, end) -> sources.Scan:
    """A window's Scan cut from a scan of a longer stretch read without the pushed-down filters
    (a whole-file table), as the reader builds it: counts and profile over every row in the
    window, then the rule's first `where` (a column the source lacks is null to it)."""
    frame = whole.frame
    rows = frame[(frame["TimeGenerated"] >= start) & (frame["TimeGenerated"] < end)]
    times = rows["TimeGenerated"]
    absent = [c for c in whole.missing_columns if c in columns]
    kept = sources._keep(
        rows.assign(**{c: None for c in absent}), correlation.PUSHDOWN.get(table)
    ).drop(columns=absent)
    return sources.Scan(
        table,
        kept.reset_index(drop=True),
        whole.source,
        whole.format,
        whole.rows_read,
        len(times),
        list(whole.missing_columns),
        list(whole.quarantine),
        sources._hourly(times),
        sources._newest(times),
        dict(whole.source_types),
    )


class _Table:
    """How one table is read over the range: by slices, or whole per chunk of windows. Every
    scan runs on `reader` (one thread, so one scan of this table at a time): the next window's
    slices are read there while this window is gated and correlated (DuckDB lets go of the
    GIL). Files get a reader per table, so both tables' slices are read side by side: a day's
    file of one row group is one DuckDB thread's work, and the machine has more."""

    def __init__(self, name: str, columns: dict, reader: ThreadPoolExecutor, source):
        self.name, self.columns, self.reader, self.source = name, columns, reader, source
        self.whole = False
        self.slices: dict[pd.Timestamp, sources.Scan] = {}
        self.pending: dict[pd.Timestamp, Future] = {}
        self.chunk: tuple | None = None  # (start, end, Scan) read whole
        self.quarantines: list[SimpleNamespace] = []  # of every scan made

    def _read(self, start, end, prefilter: bool = True) -> Future:
        return self.reader.submit(self.source.scan, self.name, start, end, self.columns, prefilter)

    def prefetch(self, start, end, step) -> None:
        """Start reading the slices of [start, end) not read yet."""
        if self.whole:
            return
        for at in _steps(start, end, step):
            if at not in self.slices and at not in self.pending:
                self.pending[at] = self._read(at, at + step)

    def settle(self, at, span, step) -> None:
        """Take the slice at `at` (read or being read); once it shows the table is read by
        slices, queue the rest of [at, at + span) behind it. The first window does this for
        every table before scanning any, so the tables' readers work side by side from the
        start, and a whole-file table is known before more of its slices are queued."""
        if not self.whole and at not in self.slices and self._take(at, step):
            self.prefetch(at, at + span, step)

    def _take(self, at, step) -> bool:
        """The slice at `at` into self.slices; False when it shows a whole-file table (then
        the table is read whole from now on)."""
        scan = (self.pending.pop(at, None) or self._read(at, at + step)).result()
        self.quarantines.append(SimpleNamespace(quarantine=scan.quarantine))
        if scan.format in WHOLE_FILE_FORMATS:  # every scan reads the whole file
            self.whole, self.slices = True, {}
            for late in self.pending.values():
                late.cancel()
            self.pending = {}
            return False
        self.slices[at] = scan
        return True

    def scan(self, start, end, step, ends_left) -> sources.Scan:
        if self.whole:
            if self.chunk is None or not (self.chunk[0] <= start and end <= self.chunk[1]):
                chunk_end = ends_left[min(CHUNK_WINDOWS, len(ends_left)) - 1]
                self.chunk = None  # the previous chunk's rows go before the next is read
                whole = self._read(start, chunk_end, prefilter=False).result()
                self.chunk = (start, chunk_end, whole)
                self.quarantines.append(SimpleNamespace(quarantine=whole.quarantine))
            return _cut(self.name, self.chunk[2], self.columns, start, end)
        parts = []
        for at in _steps(start, end, step):
            if at not in self.slices and not self._take(at, step):
                return self.scan(start, end, step, ends_left)
            parts.append(self.slices[at])
        return merge_scans(self.name, parts)

    def forget_before(self, start) -> None:
        for at in [at for at in self.slices if at < start]:
            del self.slices[at]


def _steps(start, end, step):
    at = start
    while at < end:
        yield at
        at += step


class Hunt:
    """The rule over every window of a range, in one process. Iterate it for a Detection per
    window, in order, each as pipeline.detect(raise_on_failure=False) returns it for that
    window alone (stateless: judged without run history, as `detect`); then `quarantine`
    holds every unreadable or repaired record the scans met, each once."""

    def __init__(
        self,
        source,
        first,
        last,
        every: timedelta | None = None,
        period: timedelta | None = None,
        rule: Rule | None = None,
        engine: str = "native",
        docs_dir: Path | None = None,
    ):
        self.rule = rule or load_rule()
        self.period = pd.Timedelta(period or self.rule.query_period)
        self.every = pd.Timedelta(every or self.rule.query_frequency)
        self.ends = window_ends(first, last, self.every, self.period)
        self.step = slice_length(self.period, self.every)
        if self.period // self.step > MAX_SLICES:
            self.step = self.period  # windows share too little: each is scanned whole
        self.source = source
        self.engine, self.docs_dir = engine, docs_dir
        self.tables: dict[str, _Table] = {}

    def __len__(self) -> int:
        return len(self.ends)

    def __iter__(self) -> Iterator[Detection]:
        source = sources.open_source(self.source)  # once: a remote client serves every scan
        if self.engine == "ge":
            quality.prefetch()
        # A remote service's client serves one request at a time here, as in `detect`.
        own = getattr(source, "name", None) == "files"
        readers = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"range-scan-{i}")
            for i in range(len(sources.TABLES) if own else 1)
        ]
        self.tables = {
            t: _Table(t, self.rule.inputs[t], readers[i % len(readers)], source)
            for i, t in enumerate(sources.TABLES)
        }
        # The scan cache's pieces are built a slice or two ahead of the slices being read,
        # on the builder threads (sources/parquet.py), so both cores decode files while this
        # thread gates and correlates: a table's reader alone decodes one file at a time.
        prepare = getattr(source, "prepare", None) if own else None
        prepared = self.ends[0] - self.period  # slices before this one are started

        def ahead(until) -> None:
            nonlocal prepared
            until = min(until, self.ends[-1])
            while prepare is not None and prepared < until:
                for t, table in self.tables.items():
                    if not table.whole:
                        prepare(t, prepared, prepared + self.step, table.columns)
                prepared += self.step

        try:
            first = self.ends[0] - self.period
            ahead(self.ends[0] + LOOKAHEAD * self.step)
            for table in self.tables.values():
                table.prefetch(first, first + self.step, self.step)
            for table in self.tables.values():
                table.settle(first, self.period, self.step)
            for k, end in enumerate(self.ends):
                start = end - self.period
                scans = {
                    t: table.scan(start, end, self.step, self.ends[k:])
                    for t, table in self.tables.items()
                }
                if k + 1 < len(self.ends):
                    nxt = self.ends[k + 1]
                    ahead(nxt + LOOKAHEAD * self.step)
                    for table in self.tables.values():
                        table.forget_before(nxt - self.period)  # not needed again
                        table.prefetch(nxt - self.period, nxt, self.step)
                docs = Path(self.docs_dir) / _name(start, end) if self.docs_dir else None
                checks = {
                    t: validate(
                        s,
                        start,
                        end,
                        self.rule,
                        None,
                        docs,
                        raise_on_failure=False,
                        engine=self.engine,
                    )
                    for t, s in scans.items()
                }
                detection = Detection(start, end, scans, checks, None)
                if not detection.failures:
                    detection.result = correlation.correlate(
                        scans["AzureActivity"].frame, scans["BehaviorAnalytics"].frame
                    )
                yield detection
        finally:
            for reader in readers:
                reader.shutdown(wait=True, cancel_futures=True)

    @property
    def quarantine(self) -> list[SimpleNamespace]:
        """Per table, its records (as quarantine.write takes scans)."""
        return [
            SimpleNamespace(quarantine=merge_quarantine(t.quarantines))
            for t in self.tables.values()
        ]


def _name(start, end) -> str:
    fmt = "%Y%m%dT%H%M%SZ"
    return f"{start.strftime(fmt)}--{end.strftime(fmt)}"


# --- one result file for every window ---------------------------------------------------------


class RangeWriter:
    """Every window's result rows into one file (.jsonl or .parquet), a leading WindowEnd column
    (ISO 8601 UTC) then the rule's 13 columns. Rows are written as windows finish (memory holds
    one window's), into a temporary file renamed into place at the end: a reader sees no file
    or the whole range, never part of it."""

    def __init__(self, out: Path):
        self.out = Path(out)
        if self.out.suffix not in (".jsonl", ".parquet"):
            raise UsageError(f"--out {out}: use a .jsonl or .parquet file name")
        self.rows = 0
        self._stack = ExitStack()

    def __enter__(self):
        tmp = self._stack.enter_context(atomic_path(self.out))
        if self.out.suffix == ".jsonl":
            self._fh = self._stack.enter_context(open(tmp, "w", encoding="utf-8"))
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            fields = [pa.field(WINDOW_END, pa.string())] + [
                pa.field(
                    c,
                    pa.timestamp("ns", tz="UTC") if c in results.DATETIME_COLUMNS else pa.string(),
                )
                for c in OUTPUT_COLUMNS
            ]
            self._schema = pa.schema(fields)
            self._pq = self._stack.enter_context(pq.ParquetWriter(tmp, self._schema))
        return self

    def add(self, end, frame: pd.DataFrame | None) -> None:
        if frame is None or frame.empty:
            return
        frame = frame.assign(**{WINDOW_END: results.format_datetime(pd.Timestamp(end))})
        if self.out.suffix == ".jsonl":
            for record in results.to_records(frame, COLUMNS):
                self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            self._pq.write_table(results.to_arrow(frame, COLUMNS).cast(self._schema))
        self.rows += len(frame)

    def __exit__(self, *exc):
        return self._stack.__exit__(*exc)


class RangeQualityError(DataQualityError):
    """Some windows of a range failed the data-quality gate (CLI exit 3); the others ran.
    `failed` holds (window end, that window's DataQualityError): not the windows' rows."""

    def __init__(self, failed: list[tuple[pd.Timestamp, DataQualityError]], total: int):
        self.failures = [
            {**f, "window_end": end.isoformat()} for end, error in failed for f in error.failures
        ]
        windows = "; ".join(f"window ending {end.isoformat()}: {error}" for end, error in failed)
        DetectionError.__init__(
            self, f"data-quality gate failed in {len(failed)} of {total} windows ({windows})"
        )
