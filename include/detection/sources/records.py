"""JSON Lines and CSV, record by record, so one bad record is quarantined, not fatal; read from
the binary file objects a storage opens (local disk or fsspec alike), one file or many (the data
export layout's hourly files) into one scan.

Every string leaves here as valid Unicode: invalid UTF-8 and lone surrogates become U+FFFD, as
Kusto ingestion stores them; the row is kept and listed in the quarantine as repaired.
"""

from __future__ import annotations

import csv
import json
import re

import pandas as pd

from .scan import (
    DATETIME,
    DYNAMIC,
    JSON_TEXT_STRINGS,
    REPAIRED,
    Scan,
    _hourly,
    _keep,
    _newest,
    _parse_times,
    _typed,
)

# A lone surrogate (what json.loads makes of an unpaired "\udc80" escape) is not Unicode text:
# pyarrow, the staging Parquet and every JSON writer refuse it.
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # in JSON text: maybe one, parse to know
# Kusto's longest string value is 32 MiB (1 MiB by default); the csv module's limit is 128 KiB.
_CSV_FIELD_LIMIT = 32 << 20


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


def _bad(table, source, line, reason, raw, kept=False, count=1) -> dict:
    record = {
        "table": table,
        "source": source,
        "line": line,
        "reason": reason,
        "raw": _raw_text(raw),
        "kept": kept,
    }
    if count > 1:
        record["count"] = count  # a malformed CSV record swallowed this many lines
    return record


# --- One scan over one or more files ------------------------------------------------------------


def read_jsonl(
    storage, paths, table: str, start, end, columns, rules, source: str, fmt: str = "jsonl"
) -> Scan:
    """The records of every file in `paths` (in that order) as one scan."""
    records = _Records(storage, table, columns)
    for path in paths:
        records.jsonl(path)
    return records.finish(source, fmt, start, end, rules)


def read_csv(storage, path, table: str, start, end, columns, rules) -> Scan:
    """A Log Analytics portal export ("TimeGenerated [UTC]" headers)."""
    records = _Records(storage, table, columns)
    records.csv(path)
    return records.finish(storage.display(path), "csv", start, end, rules)


class _Records:
    """The needed fields of the records read so far, where each came from, and the quarantine."""

    def __init__(self, storage, table: str, columns):
        self.storage, self.table, self.columns = storage, table, columns
        self.values: dict[str, list] = {c: [] for c in columns}
        self.seen: set[str] = set()
        self.origin: list[tuple[int, int]] = []  # (file number, line) of each record kept
        self.paths: list = []
        self.names: list[str] = []  # each file as messages name it
        self.raws: dict[int, bytes] = {}  # CSV: a kept record's raw text, by record
        self.quarantine: list[dict] = []
        self.read = 0

    def _file(self, path) -> int:
        self.paths.append(path)
        self.names.append(self.storage.display(path))
        return len(self.paths) - 1

    def _bad(self, file: int, line, reason, raw, kept=False, count=1) -> dict:
        return _bad(self.table, self.names[file], line, reason, raw, kept, count)

    def jsonl(self, path) -> None:
        table, file = self.table, self._file(path)
        with self.storage.open(path, table) as fh:
            for lineno, raw in enumerate(fh, 1):
                if lineno == 1:
                    raw = raw.removeprefix(b"\xef\xbb\xbf")
                text, repaired = _decode(raw)
                if not text.strip():
                    continue
                self.read += 1
                try:
                    record = json.loads(text)
                except ValueError as exc:
                    self.quarantine.append(self._bad(file, lineno, f"not JSON ({exc.msg})", raw))
                    continue
                except RecursionError:
                    self.quarantine.append(
                        self._bad(file, lineno, "not JSON (nested too deeply)", raw)
                    )
                    continue
                if not isinstance(record, dict):
                    self.quarantine.append(
                        self._bad(
                            file, lineno, f"not a JSON object (a {type(record).__name__})", raw
                        )
                    )
                    continue
                # A surrogate can only come from a \u escape (the text itself was decoded clean).
                try:
                    problem, fixed = _append_record(
                        record, self.columns, self.values, self.seen, b"\\u" in raw
                    )
                except RecursionError:  # a dynamic value too deep to serialise
                    problem, fixed = "a value is nested too deeply", False
                if problem:
                    self.quarantine.append(self._bad(file, lineno, problem, raw))
                    continue
                self.origin.append((file, lineno))
                if repaired or fixed:
                    self.quarantine.append(self._bad(file, lineno, REPAIRED, raw, kept=True))

    def csv(self, path) -> None:
        """Record by record with the csv module: a malformed record (bad quoting, a wrong number
        of fields) is quarantined with its line, and the other records still count."""
        table, file = self.table, self._file(path)
        pending: list[tuple[bytes, bool]] = []  # the physical lines of the record being parsed

        def lines(fh):
            for i, raw in enumerate(fh):
                if i == 0:
                    raw = raw.removeprefix(b"\xef\xbb\xbf")
                text, repaired = _decode(raw)
                pending.append((raw, repaired))
                yield text

        limit = csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
        try:
            with self.storage.open(path, table) as fh:
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
                        self.read += 1
                        self.quarantine.append(
                            self._bad(
                                file,
                                first,
                                _csv_reason(exc, first, reader),
                                b"".join(r for r, _ in pending),
                                count=len(pending),
                            )
                        )
                        continue
                    if not fields:
                        continue  # a blank line
                    if header is None:
                        header = [c.removesuffix(" [UTC]").strip() for c in fields]
                        index = {c: header.index(c) for c in self.columns if c in header}
                        self.seen.update(index)
                        continue
                    self.read += 1
                    raw = b"".join(r for r, _ in pending)
                    if len(fields) != len(header):
                        self.quarantine.append(
                            self._bad(
                                file,
                                first,
                                f"malformed CSV record ({len(fields)} fields, the header "
                                f"has {len(header)})",
                                raw,
                                count=len(pending),
                            )
                        )
                        continue
                    record = {c: fields[i] or None for c, i in index.items()}
                    # every CSV value is a string: no type problem, only repairs
                    _, fixed = _append_record(
                        record, self.columns, self.values, set(), b"\\u" in raw
                    )
                    self.raws[len(self.origin)] = raw
                    self.origin.append((file, first))
                    if fixed or any(r for _, r in pending):
                        self.quarantine.append(self._bad(file, first, REPAIRED, raw, kept=True))
        finally:
            csv.field_size_limit(limit)

    def _raw_of(self, rows: set[int]) -> dict[int, bytes]:
        """The raw text of these records: kept (CSV) or read again, one pass per file."""
        out = {r: self.raws[r] for r in rows if r in self.raws}
        wanted: dict[int, dict[int, int]] = {}  # file -> line -> record
        for r in rows:
            if r not in out:
                file, line = self.origin[r]
                wanted.setdefault(file, {})[line] = r
        for file, lines in wanted.items():
            with self.storage.open(self.paths[file], self.table) as fh:
                for i, raw in enumerate(fh, 1):
                    if i in lines:
                        out[lines[i]] = raw
        return out

    def finish(self, source: str, fmt: str, start, end, rules) -> Scan:
        table, columns, quarantine = self.table, self.columns, self.quarantine
        frame = pd.DataFrame({c: pd.Series(self.values[c], dtype=object) for c in columns})
        frame["_row"] = range(len(self.origin))
        raw_time = frame["TimeGenerated"]
        parsed = _parse_times(raw_time)
        bad = parsed.isna()
        raws = self._raw_of({int(n) for n in frame.loc[bad, "_row"]}) if bad.any() else {}
        if raws:  # a repaired record without a time is not kept after all: listed once, as unread
            places = {(self.names[self.origin[r][0]], self.origin[r][1]) for r in raws}
            quarantine[:] = [
                q for q in quarantine if not (q["kept"] and (q["source"], q["line"]) in places)
            ]
        for i in frame.index[bad]:
            reason = (
                "null TimeGenerated"
                if raw_time[i] is None
                else f"unparseable TimeGenerated {raw_time[i]!r}"
            )
            row = int(frame.at[i, "_row"])
            file, line = self.origin[row]
            quarantine.append(self._bad(file, line, reason, raws[row]))
        frame = frame.assign(TimeGenerated=parsed)[~bad]
        frame = frame[(frame["TimeGenerated"] >= start) & (frame["TimeGenerated"] < end)]
        times = frame["TimeGenerated"]
        frame = _typed(_keep(frame.drop(columns="_row"), rules), columns)
        missing = [c for c in columns if c not in self.seen] if self.read else []
        order = {name: i for i, name in enumerate(self.names)}
        quarantine.sort(key=lambda q: (order[q["source"]], q["line"]))
        types = {
            c: "string" if columns[c] != DATETIME else "timestamp"
            for c in columns
            if c in self.seen
        }
        return Scan(
            table,
            frame,
            source,
            fmt,
            self.read,
            len(times),
            missing,
            quarantine,
            _hourly(times),
            _newest(times),
            types,
        )


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
            v = (
                v
                if isinstance(v, str)
                else json.dumps(v, separators=(",", ":"), ensure_ascii=False)
            )
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
