"""Reading AzureActivity and BehaviorAnalytics for a query period, from a folder of exports.

A source folder holds each table as exactly one of:
  <Table>.jsonl   JSON Lines, Log Analytics column names, ISO 8601 UTC datetimes (up to 7 digits),
                  dynamic columns as JSON objects or JSON text;
  <Table>/        Parquet files, possibly Hive-partitioned (date=YYYY-MM-DD/part-0.parquet), with
                  TimeGenerated a timestamp column (UTC when naive) and dynamic columns as
                  JSON text;
  <Table>.csv     a Log Analytics portal export ("TimeGenerated [UTC]" headers).
Only the columns the rule reads are loaded, and only rows with TimeGenerated in [start, end).
Records that cannot be read go to `quarantine` with a reason; they are never dropped silently.

Everything in a source is data, never code: file names reach DuckDB only as bound parameters
(SQL text holds nothing but the rule's own column names), only regular files are opened, and
every string leaves here as valid Unicode (invalid UTF-8 and lone surrogates become U+FFFD, as
Kusto ingestion stores them; the row is kept and listed in the quarantine as repaired).
"""

from __future__ import annotations

import csv
import json
import os
import re
import stat
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import pandas as pd

from . import kql
from .correlation import PUSHDOWN
from .errors import SourceError, UsageError

TABLES = ("AzureActivity", "BehaviorAnalytics")
DATETIME, DYNAMIC = "datetime", "dynamic"
# Columns stored as strings that may arrive as JSON objects (Authorization is a JSON blob in a
# string column; an export may have expanded it): they are kept as compact JSON text.
JSON_TEXT_STRINGS = {"Authorization"}
REPAIRED = "invalid UTF-8 replaced by U+FFFD (row kept)"
# A lone surrogate (what json.loads makes of an unpaired "\udc80" escape) is not Unicode text:
# pyarrow, the staging Parquet and every JSON writer refuse it.
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")   # in JSON text: maybe one, parse to know
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_GLOB = re.compile(r"[*?\[]")          # what makes DuckDB read a file name as a pattern
_GLOB_ESCAPE = re.compile(r"[*?\[\]]")
# Kusto's longest string value is 32 MiB (1 MiB by default); the csv module's limit is 128 KiB.
_CSV_FIELD_LIMIT = 32 << 20


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
    # unreadable records, and (with "kept": True) records kept after a repair
    quarantine: list[dict] = field(default_factory=list)
    hourly: dict[str, int] = field(default_factory=dict)  # "YYYY-MM-DDTHH" -> rows in window
    newest: str | None = None     # newest TimeGenerated in the window (ISO)
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
            "table": self.table, "format": self.format, "rows_read": self.rows_read,
            "rows_in_window": self.rows_in_window, "candidates": len(self.frame),
            "quarantined": self.quarantined, "repaired": self.repaired,
            "missing_columns": self.missing_columns,
            "newest": self.newest, "hourly": self.hourly, "source_types": self.source_types,
        }


def locate(source: Path, table: str) -> tuple[str, Path]:
    """The one place `table` lives in `source`. Two formats of one table are refused: reading
    either would silently ignore the other's rows."""
    source = Path(source)
    candidates = [("jsonl", source / f"{table}.jsonl"), ("parquet", source / table),
                  ("csv", source / f"{table}.csv")]
    found = [(fmt, path) for fmt, path in candidates if os.path.lexists(path)]
    if not found:
        raise SourceError(table, f"not found in {source} (looked for {table}.jsonl, {table}/ of "
                                 f"Parquet files, {table}.csv)")
    if len(found) > 1:
        raise SourceError(table, "found in more than one format, so which rows count is "
                                 f"ambiguous: {', '.join(str(p) for _, p in found)} (keep one)")
    fmt, path = found[0]
    mode = _stat(path, table).st_mode
    if fmt == "parquet" and not stat.S_ISDIR(mode):
        raise SourceError(table, f"{path} is {_file_kind(mode)}, expected a folder of Parquet "
                                 "files")
    if fmt != "parquet" and not stat.S_ISREG(mode):
        raise SourceError(table, f"{path} is {_file_kind(mode)}, not a regular file")
    return fmt, path


def read_table(source: Path, table: str, start: datetime, end: datetime,
               columns: dict[str, str], prefilter: bool = True) -> Scan:
    """Rows of `table` with TimeGenerated in [start, end), restricted to `columns` (name -> type).

    With `prefilter`, only rows that pass the query's first `where` on this table are kept
    (see correlation.PUSHDOWN); the counts and hourly profile still cover every row in the window.
    """
    fmt, path = locate(source, table)
    reader = {"jsonl": _read_jsonl, "parquet": _read_parquet, "csv": _read_csv}[fmt]
    rules = PUSHDOWN.get(table) if prefilter else None
    scan = reader(path, table, pd.Timestamp(start), pd.Timestamp(end), columns, rules)
    # A column absent from the source is absent from the frame: the quality gate names it.
    scan.frame = scan.frame.drop(columns=scan.missing_columns).reset_index(drop=True)
    return scan


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


# --- Files: only regular files are opened, and every failure names the table and the file --------

def _stat(path: Path, table: str) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as exc:
        raise SourceError(table, f"cannot read {path}: {exc.strerror}") from None


def _file_kind(mode: int) -> str:
    kinds = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISREG, "a regular file")]
    return next((name for test, name in kinds if test(mode)), "not a regular file")


@contextmanager
def _open_regular(path: Path, table: str):
    """The file as a binary stream. Opened without blocking and checked on the open descriptor,
    so a FIFO swapped in after `locate` is refused instead of waiting forever for a writer."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise SourceError(table, f"cannot open {path}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise SourceError(table, f"{path} is {_file_kind(mode)}, not a regular file")
        os.set_blocking(fd, True)
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with fh:
        try:
            yield fh
        except OSError as exc:
            raise SourceError(table, f"cannot read {path}: {exc.strerror or exc}") from None


# --- Text: every string leaves as valid Unicode -------------------------------------------------

def _decode(raw: bytes) -> tuple[str, bool]:
    """A line's text, and whether invalid UTF-8 in it was replaced (one U+FFFD per maximal
    invalid sequence, as the Unicode standard recommends and .NET decoders do)."""
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace"), True


def _raw_text(raw: bytes | None) -> str | None:
    """Raw bytes for the quarantine file: invalid bytes spelled as \\xNN, never a crash."""
    return None if raw is None else raw.decode("utf-8", "backslashreplace").rstrip("\r\n")


def _unicode(text: str) -> str:
    return _SURROGATE.sub("\ufffd", text)


def _walk_unicode(value):
    if isinstance(value, str):
        return _unicode(value)
    if isinstance(value, dict):
        return {_unicode(k): _walk_unicode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk_unicode(v) for v in value]
    return value


def _unicode_json_text(text: str) -> str:
    """Dynamic JSON text whose escapes spell a lone surrogate, re-serialised with U+FFFD in its
    place (Kusto parses a dynamic column at ingestion; the query reads the parsed value)."""
    if not _SURROGATE_ESCAPE.search(text):
        return text
    try:
        value = json.loads(text)
        clean = _walk_unicode(value)
    except (ValueError, RecursionError):
        return text  # not JSON (to us): the query sees this text itself, valid Unicode
    if clean == value:
        return text
    return json.dumps(clean, separators=(",", ":"), ensure_ascii=False)


# --- JSON Lines and CSV: record by record, so one bad line is quarantined, not fatal --------------

def _read_jsonl(path: Path, table: str, start, end, columns, rule) -> Scan:
    values: dict[str, list] = {c: [] for c in columns}
    seen: set[str] = set()
    rows: list[int] = []
    quarantine: list[dict] = []
    read = 0
    with _open_regular(path, table) as fh:
        for lineno, raw in enumerate(fh, 1):
            if lineno == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            text, repaired = _decode(raw)
            if not text.strip():
                continue
            read += 1
            try:
                record = json.loads(text)
            except ValueError as exc:
                quarantine.append(_bad(table, path, lineno, f"not JSON ({exc.msg})", raw))
                continue
            except RecursionError:
                quarantine.append(_bad(table, path, lineno, "not JSON (nested too deeply)", raw))
                continue
            if not isinstance(record, dict):
                quarantine.append(_bad(table, path, lineno,
                                       f"not a JSON object (a {type(record).__name__})", raw))
                continue
            # A surrogate can only come from a \u escape (the text itself was decoded clean).
            try:
                problem, fixed = _append_record(record, columns, values, seen, b"\\u" in raw)
            except RecursionError:  # a dynamic value too deep to serialise
                problem, fixed = "a value is nested too deeply", False
            if problem:
                quarantine.append(_bad(table, path, lineno, problem, raw))
                continue
            rows.append(lineno)
            if repaired or fixed:
                quarantine.append(_bad(table, path, lineno, REPAIRED, raw, kept=True))
    return _finish(table, path, "jsonl", values, rows, seen, columns, quarantine, read, start, end,
                   rule, raw_of=lambda numbers: _lines(path, table, numbers))


def _read_csv(path: Path, table: str, start, end, columns, rule) -> Scan:
    """A portal export, record by record with the csv module: a malformed record (bad quoting,
    a wrong number of fields) is quarantined with its line, and the other records still count."""
    values: dict[str, list] = {c: [] for c in columns}
    seen: set[str] = set()
    rows: list[int] = []
    quarantine: list[dict] = []
    raws: dict[int, bytes] = {}
    read = 0
    pending: list[tuple[bytes, bool]] = []   # the physical lines of the record being parsed

    def lines(fh):
        for i, raw in enumerate(fh):
            if i == 0:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            text, repaired = _decode(raw)
            pending.append((raw, repaired))
            yield text

    limit = csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
    try:
        with _open_regular(path, table) as fh:
            reader = csv.reader(lines(fh), strict=True)
            header: list[str] | None = None
            while True:
                first = reader.line_num + 1
                pending.clear()
                try:
                    fields = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    read += 1
                    quarantine.append(_bad(table, path, first, _csv_reason(exc, first, reader),
                                           b"".join(r for r, _ in pending),
                                           count=len(pending)))
                    continue
                if not fields:
                    continue  # a blank line
                if header is None:
                    header = [c.removesuffix(" [UTC]").strip() for c in fields]
                    index = {c: header.index(c) for c in columns if c in header}
                    seen.update(index)
                    continue
                read += 1
                raw = b"".join(r for r, _ in pending)
                if len(fields) != len(header):
                    quarantine.append(_bad(
                        table, path, first,
                        f"malformed CSV record ({len(fields)} fields, the header has "
                        f"{len(header)})", raw, count=len(pending)))
                    continue
                record = {c: fields[i] or None for c, i in index.items()}
                # every CSV value is a string: no type problem, only repairs
                _, fixed = _append_record(record, columns, values, set(), b"\\u" in raw)
                rows.append(first)
                raws[first] = raw
                if fixed or any(r for _, r in pending):
                    quarantine.append(_bad(table, path, first, REPAIRED, raw, kept=True))
    finally:
        csv.field_size_limit(limit)
    return _finish(table, path, "csv", values, rows, seen, columns, quarantine, read, start, end,
                   rule, raw_of=lambda numbers: {n: raws[n] for n in numbers})


def _csv_reason(exc: csv.Error, first: int, reader) -> str:
    span = f"line {first}" if reader.line_num <= first else f"lines {first}-{reader.line_num}"
    return f"malformed CSV record ({exc}; {span})"


def _append_record(record: dict, columns, values, seen, escapes: bool) -> tuple[str | None, bool]:
    """Type-check one record's needed fields and append them. Returns (a reason when it can't,
    whether a lone surrogate was replaced); `escapes` says whether the record's text holds any
    \\u escape, the only way one can get in."""
    row = {}
    fixed = False
    for col, kind in columns.items():
        v = record.get(col)
        if col in record:
            seen.add(col)
        if v is None or kind == DATETIME:
            row[col] = v
            continue
        if kind == DYNAMIC:
            v = v if isinstance(v, str) else json.dumps(v, separators=(",", ":"),
                                                        ensure_ascii=False)
        elif isinstance(v, str):
            pass
        elif col in JSON_TEXT_STRINGS and isinstance(v, (dict, list)):
            v = json.dumps(v, separators=(",", ":"), ensure_ascii=False)
        else:
            return f"wrong type: {col} is a JSON {type(v).__name__}, expected a string", False
        if escapes:
            clean = _unicode(v)
            if kind == DYNAMIC:
                clean = _unicode_json_text(clean)
            fixed |= clean != v
            v = clean
        row[col] = v
    if escapes and isinstance(row.get("TimeGenerated"), str):
        row["TimeGenerated"] = _unicode(row["TimeGenerated"])
    for col, v in row.items():
        values[col].append(v)
    return None, fixed


def _finish(table, path, fmt, values, rows, seen, columns, quarantine, read, start, end, rule,
            raw_of):
    frame = pd.DataFrame({c: pd.Series(values[c], dtype=object) for c in columns})
    frame["_row"] = rows
    raw_time = frame["TimeGenerated"]
    parsed = _parse_times(raw_time)
    bad = parsed.isna()
    raws = raw_of({int(n) for n in frame.loc[bad, "_row"]}) if bad.any() else {}
    if raws:  # a repaired record without a time is not kept after all: listed once, as unread
        quarantine[:] = [q for q in quarantine if not (q["kept"] and q["line"] in raws)]
    for i in frame.index[bad]:
        reason = "null TimeGenerated" if raw_time[i] is None else \
            f"unparseable TimeGenerated {raw_time[i]!r}"
        row = int(frame.at[i, "_row"])
        quarantine.append(_bad(table, path, row, reason, raws[row]))
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


def _bad(table, path, line, reason, raw, kept=False, count=1) -> dict:
    record = {"table": table, "source": str(path), "line": line, "reason": reason,
              "raw": _raw_text(raw), "kept": kept}
    if count > 1:
        record["count"] = count  # a malformed CSV record swallowed this many lines
    return record


def _lines(path: Path, table: str, numbers: set[int]) -> dict[int, bytes]:
    """The raw bytes of these line numbers, in one pass over the file."""
    with _open_regular(path, table) as fh:
        return {i: line for i, line in enumerate(fh, 1) if i in numbers}


# --- Parquet: projection and the window pushed down to the scan ----------------------------------
#
# SQL text is built only from the rule's column names (checked identifiers) and fixed fragments;
# file names, the window, literals and patterns are bound parameters. DuckDB still pushes the
# predicates into the scan: it binds the parameters before optimising.

_SRC = "read_parquet($files, hive_partitioning = false, union_by_name = true)"


def _read_parquet(path: Path, table: str, start, end, columns, rules) -> Scan:
    """DuckDB scans the folder: the window and the pushed-down predicates are evaluated in the
    scan, so the large string columns are decoded only for candidate rows; a second, narrow pass
    over TimeGenerated profiles every row of the window (hourly counts, newest row)."""
    import duckdb

    for column in [*columns, *(r[0] for r in rules or ())]:
        if not _IDENT.fullmatch(column):
            raise UsageError(f"{table}: column name {column!r} in the rule is not a plain "
                             "identifier")
    files = _parquet_files(Path(path), table)  # {absolute path: path parts under the folder}
    con = duckdb.connect()
    try:
        return _scan_parquet(con, path, table, start, end, columns, rules, files)
    except duckdb.Error as exc:
        raise _duckdb_error(con, exc, table, path, files, columns) from None
    finally:
        con.close()


def _scan_parquet(con, path, table, start, end, columns, rules, files) -> Scan:
    con.execute("SET TimeZone = 'UTC'")
    # Prefetching reads whole column chunks ahead, the wide strings included, although the
    # pushed-down filters keep a few rows in 4,000: off, the scan holds one page per column and
    # thread, so memory stays flat as the lake grows (measured at 10M rows/day: 513 -> 185 MiB
    # peak, and 10% faster on local files, which the page cache serves anyway).
    con.execute("SET disable_parquet_prefetching = true")
    names = {f: _duckdb_path(f, table, con) for f in files}
    everything = {"files": list(names.values())}
    types = {name: kind for name, kind, *_ in
             con.sql(f"DESCRIBE SELECT * FROM {_SRC}", params=everything).fetchall()}
    missing = [c for c in columns if c not in types]
    source_types = {c: _kind(types[c]) for c in columns if c in types}
    if "TimeGenerated" in missing:
        total = con.sql(f"SELECT count(*) FROM {_SRC}", params=everything).fetchall()[0][0]
        return Scan(table, _typed(pd.DataFrame({c: [] for c in columns}), columns), str(path),
                    "parquet", total, 0, missing, [], source_types=source_types)
    if not types["TimeGenerated"].startswith("TIMESTAMP"):
        raise SourceError(table, f"is {types['TimeGenerated']} in {path}, expected a timestamp",
                          "TimeGenerated")
    total, null_times = _row_counts(con, everything)
    # Hive `date=` partitions far outside the window are not read at all (a day of slack each
    # side, in case the export partitions by ingestion date); TimeGenerated is still exact.
    near = [names[f] for f, parts in files.items() if _near_window(parts, start, end)]
    window, bounds = _sql_window(types["TimeGenerated"], start, end)
    present = [c for c in columns if c in types]
    hourly, frame = [], pd.DataFrame({c: pd.Series([], dtype=object) for c in present})
    if near:
        params = {"files": near, **bounds}
        # One narrow pass over TimeGenerated in the window: rows per hour and the newest row.
        hourly = con.sql(
            f"SELECT epoch_ns(TimeGenerated) // 3600000000000 AS h, count(*), "
            f"max(epoch_ns(TimeGenerated)) FROM {_SRC} WHERE {window} GROUP BY h",
            params=params).fetchall()
        keep, literals = _sql_predicates(rules, types)
        frame = con.sql(f"SELECT {', '.join(map(_ident, present))} FROM {_SRC} "
                        f"WHERE {' AND '.join([window, *keep])}",
                        params={**params, **literals}).to_arrow_table().to_pandas()
    for c in missing:
        frame[c] = None
    frame["TimeGenerated"] = _ticks(pd.to_datetime(frame["TimeGenerated"], utc=True))
    for c, kind in columns.items():
        if kind == DYNAMIC and c in present and source_types[c] != "string":
            frame[c] = frame[c].map(lambda v: None if v is None else
                                    json.dumps(v, separators=(",", ":"), ensure_ascii=False,
                                               default=str))
    frame = _keep(frame, rules)  # predicates the SQL could not take (non-string columns)
    quarantine = []
    if null_times:
        quarantine.append({"table": table, "source": str(path), "line": None,
                           "reason": "null TimeGenerated", "raw": None, "count": null_times,
                           "kept": False})
    for c, kind in columns.items():
        if kind == DYNAMIC and c in present and len(frame):
            frame[c], fixed = _unicode_json_column(frame[c])
            if fixed:
                quarantine.append({"table": table, "source": str(path), "line": None,
                                   "column": c, "reason": REPAIRED, "raw": None, "count": fixed,
                                   "kept": True})
    in_window = sum(n for _, n, _ in hourly)
    counts = {pd.Timestamp(h * 3600 * 10**9, tz="UTC").strftime("%Y-%m-%dT%H"): n
              for h, n, _ in hourly}
    newest = max((t for *_, t in hourly), default=None)
    newest = None if newest is None else pd.Timestamp(newest // 100 * 100, tz="UTC").isoformat()
    return Scan(table, _typed(frame, columns), str(path), "parquet", total, in_window, missing,
                quarantine, counts, newest, source_types)


def _parquet_files(folder: Path, table: str) -> dict[str, tuple[str, ...]]:
    """Every Parquet file under the folder (absolute, so DuckDB never resolves a name against
    its search path or home directory), with its path parts under the folder. Dot and
    underscore entries are writers' scratch files; a FIFO, socket or device named *.parquet is
    refused: reading it could block forever."""
    files = {}
    for f in sorted(folder.rglob("*.parquet")):
        parts = f.relative_to(folder).parts
        if any(part.startswith((".", "_")) for part in parts):
            continue
        mode = _stat(f, table).st_mode
        if stat.S_ISDIR(mode):
            continue  # a Spark-style folder named *.parquet: rglob lists its files too
        if not stat.S_ISREG(mode):
            raise SourceError(table, f"{f} is {_file_kind(mode)}, not a regular file")
        files[os.path.abspath(f)] = parts
    if not files:
        raise SourceError(table, f"no Parquet files under {folder}")
    return files


def _duckdb_path(path: str, table: str, con) -> str:
    """The path as DuckDB must be given it to read exactly this one file: DuckDB expands * ? [
    in a file name as a glob (a file named "*.parquet" would read every file beside it), so
    those are escaped as one-character classes, and the escaped name is checked to match
    only itself."""
    if not _GLOB.search(path):
        return path
    if "\\" in path:  # in a glob DuckDB splits at backslashes: the name has no escaped form
        raise SourceError(table, f"cannot read {path!r}: DuckDB reads a name holding both a "
                                 "backslash and * ? [ ] as a pattern (rename the file)")
    pattern = _GLOB_ESCAPE.sub(lambda m: f"[{m.group()}]", path)
    matches = [m for (m,) in con.sql("SELECT file FROM glob($p)", params={"p": pattern}).fetchall()]
    if matches != [path]:
        raise SourceError(table, f"cannot read {path!r} by name alone (DuckDB matches "
                                 f"{len(matches)} file(s) for it; rename the file)")
    return pattern


def _near_window(parts: tuple[str, ...], start, end) -> bool:
    """Whether a file's `date=` folder (if any) is within a day of the window. Only `date=` has
    a meaning: DuckDB's Hive partitioning would also let a folder named `Caller=x` overwrite
    every Caller in the files under it."""
    for part in parts[:-1]:
        key, sep, value = part.partition("=")
        if sep and key == "date":
            try:
                day = date.fromisoformat(value)
            except ValueError:
                return True  # not a date: no pruning, TimeGenerated decides
            one = pd.Timedelta(days=1)
            return (start - one).date() <= day <= (end + one).date()
    return True


def _duckdb_error(con, exc, table: str, path: Path, files: list[str], columns) -> SourceError:
    """DuckDB's error as a SourceError naming the table, the file and (invalid text) the
    column. Invalid UTF-8 is named, not quoted: the value could be anything, a secret too."""
    message = str(exc).split("\n")[0]
    where = next((f for f in files if f in message), None)
    if "UTF8" in message or "UTF-8" in message:
        column = _column_with_invalid_text(con, where, columns) if where else None
        return SourceError(table, f"invalid UTF-8 in a string column of Parquet file "
                                  f"{where or path} (re-export it as UTF-8)", column)
    place = f"file {where}" if where else f"folder {path}"
    return SourceError(table, f"cannot read Parquet {place}: {message}")


def _column_with_invalid_text(con, file: str, columns) -> str | None:
    """Which of the rule's string columns of `file` DuckDB refuses to decode."""
    import duckdb

    for column, kind in columns.items():
        if kind == DATETIME:
            continue
        try:
            con.sql(f"SELECT max(length({_ident(column)})) FROM read_parquet($f)",
                    params={"f": [_GLOB_ESCAPE.sub(lambda m: f"[{m.group()}]", file)
                                  if _GLOB.search(file) else file]}).fetchall()
        except duckdb.Error as exc:
            if "UTF8" in str(exc) or "UTF-8" in str(exc):
                return column
    return None


def _unicode_json_column(values: pd.Series) -> tuple[pd.Series, int]:
    """_unicode_json_text over a column; only rows with a surrogate escape are parsed."""
    text = values.astype(object)
    maybe = values.astype("str").str.contains(_SURROGATE_ESCAPE.pattern, regex=True, na=False)
    if not maybe.any():
        return values, 0
    clean = text[maybe].map(_unicode_json_text)
    changed = clean != text[maybe]
    text = text.copy()
    text[maybe] = clean
    return text, int(changed.sum())


def _row_counts(con, everything: dict) -> tuple[int, int]:
    """Rows in the files and rows without a TimeGenerated, from the Parquet footers when the
    writer kept null counts (no data read), else by a scan of the one column. A file without a
    TimeGenerated column counts all its rows as null, as the scan reads them."""
    total = con.sql("SELECT sum(num_rows) FROM parquet_file_metadata($files)",
                    params=everything).fetchall()[0][0]
    values, nulls, unknown = con.sql(
        "SELECT sum(num_values), sum(stats_null_count), count(*) FILTER (WHERE stats_null_count "
        "IS NULL) FROM parquet_metadata($files) WHERE path_in_schema = $column",
        params={**everything, "column": "TimeGenerated"}).fetchall()[0]
    if total is not None and values is not None and not unknown:
        return int(total), int(nulls) + int(total) - int(values)
    total, missing = con.sql(f"SELECT count(*), count(*) FILTER (WHERE TimeGenerated IS NULL) "
                             f"FROM {_SRC}", params=everything).fetchall()[0]
    return int(total), int(missing)


def _sql_window(kind: str, start: pd.Timestamp, end: pd.Timestamp) -> tuple[str, dict]:
    """TimeGenerated in [start, end) at nanosecond precision, whatever the stored unit."""
    bounds = {"lo": start.as_unit("ns").value, "hi": end.as_unit("ns").value}
    col = _ident("TimeGenerated")
    if kind in ("TIMESTAMP_NS", "TIMESTAMPTZ_NS"):  # comparable with row-group statistics
        return (f"{col} >= make_timestamp_ns($lo)::{kind} AND "
                f"{col} < make_timestamp_ns($hi)::{kind}"), bounds
    return f"epoch_ns({col}) >= $lo AND epoch_ns({col}) < $hi", bounds


def _sql_predicates(rules, types: dict[str, str]) -> tuple[list[str], dict]:
    """The pushed-down predicates as DuckDB SQL over string columns, with their literals as
    parameters (the others are applied to the frame by `_keep`)."""
    sql, params = [], {}
    for i, (column, op, literal) in enumerate(rules or ()):
        if types.get(column) != "VARCHAR":
            continue
        col, name = _ident(column), f"p{i}"
        if op == "=~":  # the literal is ASCII, and no non-ASCII letter lowercases to one of its
            sql.append(f"lower({col}) = ${name}")
            params[name] = literal.lower()
        elif op == "==":
            sql.append(f"{col} = ${name}")
            params[name] = literal
        else:
            sql.append(f"(regexp_matches({col}, ${name}) OR contains({col}, ${name}u))")
            params[name], params[f"{name}u"] = kql.may_hold_pattern(*literal), "\\u"
    return sql, params


def _ident(name: str) -> str:
    """A column name from the rule, quoted for SQL; anything but a plain identifier is refused
    (only the rule's names ever reach SQL text)."""
    if not _IDENT.fullmatch(name):
        raise UsageError(f"column name {name!r} in the rule is not a plain identifier")
    return f'"{name}"'


def _kind(duck_type: str) -> str:
    if duck_type == "VARCHAR":
        return "string"
    if duck_type.startswith("TIMESTAMP"):
        return "timestamp"
    return duck_type


def _hourly(times: pd.Series) -> dict[str, int]:
    if times.empty:
        return {}
    counts = times.dt.floor("h").value_counts().sort_index()
    return {ts.strftime("%Y-%m-%dT%H"): int(n) for ts, n in counts.items()}


def _newest(times: pd.Series) -> str | None:
    return None if times.empty else times.max().isoformat()
