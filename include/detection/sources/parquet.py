"""Parquet through DuckDB: projection and the window pushed down to the scan.

SQL text is built only from the rule's column names (checked identifiers) and fixed fragments;
file names, the window, literals and patterns are bound parameters. DuckDB still pushes the
predicates into the scan: it binds the parameters before optimising. Files on object storage are
read through their fsspec filesystem registered with the connection (storage.FsspecStorage).
"""

from __future__ import annotations

import json
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pandas as pd

from .. import kql
from ..errors import DetectionError, SourceError, UsageError
from . import cache as cache_mod
from .records import _SURROGATE_ESCAPE, _unicode_json_text
from .scan import DATETIME, DYNAMIC, REPAIRED, Scan, _keep, _ticks, _typed

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_GLOB = re.compile(r"[*?\[]")  # what makes DuckDB read a file name as a pattern
_GLOB_ESCAPE = re.compile(r"[*?\[\]]")
_SRC = "read_parquet($files, hive_partitioning = false, union_by_name = true)"


def read_parquet(storage, path, table: str, start, end, columns, rules, cache=None) -> Scan:
    """DuckDB scans the folder: the window and the pushed-down predicates are evaluated in the
    scan, so the large string columns are decoded only for candidate rows; a second, narrow pass
    over TimeGenerated profiles every row of the window (hourly counts, newest row). With a
    `cache` (cache.Cache), each file's candidate rows and profile at any time are kept once and
    a window is served from them (cache.py); the Scan is the same."""
    import duckdb

    files, origin = _listing(storage, path, table, columns, rules)
    shown = {f: storage.display(origin[f]) for f in files}  # how messages name each file
    con, reused = _connection(storage)
    failed = True
    try:
        if not reused:
            storage.attach(con)
        pieces = None
        if cache is not None and cache_mod.servable(start, end):
            pieces = _Pieces(cache, storage, origin)
        scan = _scan_parquet(
            con,
            storage.display(path),
            table,
            start,
            end,
            columns,
            rules,
            files,
            pieces,
            _folder_facts(storage, table, origin),
        )
        failed = False
        return scan
    except duckdb.Error as exc:
        raise _duckdb_error(con, exc, table, storage.display(path), shown, columns) from None
    finally:
        if failed or not reused:  # a connection that saw an error is not lent again
            _THREAD.__dict__.pop("con", None)
            con.close()


def _listing(storage, path, table: str, columns, rules) -> tuple[dict, dict]:
    """({the name DuckDB is given: path parts under the folder}, {that name: the file}) of
    the table's Parquet files; UsageError for a rule column that is not a plain identifier,
    SourceError when there is no file."""
    for column in [*columns, *(r[0] for r in rules or ())]:
        if not _IDENT.fullmatch(column):
            raise UsageError(
                f"{table}: column name {column!r} in the rule is not a plain identifier"
            )
    listed = storage.files(path, table, ".parquet")
    if not listed:
        raise SourceError(table, f"no Parquet files under {storage.display(path)}")
    files = {storage.duckdb_name(f): parts for f, parts in listed.items()}
    origin = {storage.duckdb_name(f): f for f in listed}
    return files, origin


# What every scan of a folder reads from all its files' footers (DuckDB's types for the union
# of their columns, rows and null times), kept per version of the folder: {key: {fact: value}},
# the key naming every file by its identity (cache.identity: size, mtime, footer hash). A
# range scans the same folder once per slice (30 scans for 14 windows), each reading every
# footer three times over. Only a folder scanned before in this process is named so (a
# single `detect` scans each table once and would only pay for the naming).
_FOLDERS: dict[tuple, dict] = {}
_SCANNED: dict[tuple, int] = {}
_FOLDERS_LOCK = threading.Lock()


def _folder_facts(storage, table: str, origin: dict, ahead: bool = False) -> dict | None:
    """The memo of this version of the folder's facts (filled by _scan_parquet), or None: not
    scanned before, on object storage, or a file without a readable footer. A scan `ahead`
    (prepare) names the folder at once: its scan follows, and is then served the facts."""
    if getattr(storage, "fs", None) is not None:
        return None
    names = (table, tuple(sorted(origin)))
    with _FOLDERS_LOCK:
        seen = _SCANNED[names] = _SCANNED.get(names, 0) + (2 if ahead else 1)
    if seen < 2:
        return None
    named = []
    for name in names[1]:
        ident = cache_mod.identity(storage, origin[name])
        if ident is None:
            return None
        named.append((name, ident.size, ident.mtime, ident.footer))
    key = (table, tuple(named))
    with _FOLDERS_LOCK:
        if key not in _FOLDERS and len(_FOLDERS) >= 64:  # bounded: a long-lived worker
            _FOLDERS.clear()
            _SCANNED.clear()
        return _FOLDERS.setdefault(key, {})


def _known(facts: dict | None, name: str, compute):
    """facts[name], computed once (compute() every time without a memo)."""
    if facts is None:
        return compute()
    if name not in facts:
        facts[name] = compute()
    return facts[name]


# One DuckDB connection per thread for files on this machine: opening one costs ~15 ms, paid
# by every scan of a range's slices (30 for a 14-day back-fill) and both of a daily run's. It
# holds no data between scans (no tables; DuckDB caches no local file blocks:
# cache_local_files is off), and every scan sets the settings it relies on. Files behind
# fsspec get a fresh connection each scan: the filesystem is registered with it.
_THREAD = threading.local()


def _connection(storage):
    """(connection, lent): this thread's reusable connection for local files, or a new one."""
    import duckdb

    if getattr(storage, "fs", None) is not None:
        return duckdb.connect(), False
    # A forked child opens its own connection rather than share its parent's copy (fork
    # copies no DuckDB worker thread). The copy is kept, never destroyed: destroying it in the
    # child crashes the process (SIGSEGV, measured with duckdb 2.0).
    pid, con = getattr(_THREAD, "con", (None, None))
    if con is None or pid != os.getpid():
        if con is not None:
            _INHERITED.append(con)
        con = duckdb.connect()
        _THREAD.con = (os.getpid(), con)
    return con, True


_INHERITED: list = []  # what a forked child must never destroy (see _connection)


def _settings(con) -> None:
    con.execute("SET TimeZone = 'UTC'")
    # Prefetching reads whole column chunks ahead, the wide strings included, although the
    # pushed-down filters keep a few rows in 4,000: off, the scan holds one page per column and
    # thread, so memory stays flat as the lake grows (measured at 10M rows/day: 513 -> 185 MiB
    # peak, and 10% faster on local files, which the page cache serves anyway).
    con.execute("SET disable_parquet_prefetching = true")


def _types(con, everything: dict) -> dict[str, str]:
    """DuckDB's type of every column in the union of the files' schemas (_SRC is a fixed
    fragment; the file names are the bound parameter $files)."""
    return {
        name: kind
        for name, kind, *_ in con.sql(
            f"DESCRIBE SELECT * FROM {_SRC}", params=everything
        ).fetchall()
    }


def _scan_parquet(
    con, path: str, table, start, end, columns, rules, files, pieces=None, facts=None
) -> Scan:
    _settings(con)
    names = {f: _duckdb_path(f, table, con) for f in files}
    everything = {"files": list(names.values())}
    types = _known(facts, "types", lambda: _types(con, everything))
    missing = [c for c in columns if c not in types]
    source_types = {c: _kind(types[c]) for c in columns if c in types}
    if "TimeGenerated" in missing:
        total = con.sql(f"SELECT count(*) FROM {_SRC}", params=everything).fetchall()[0][0]
        return Scan(
            table,
            _typed(pd.DataFrame({c: [] for c in columns}), columns),
            path,
            "parquet",
            total,
            0,
            missing,
            [],
            source_types=source_types,
        )
    if not types["TimeGenerated"].startswith("TIMESTAMP"):
        raise SourceError(
            table, f"is {types['TimeGenerated']} in {path}, expected a timestamp", "TimeGenerated"
        )
    total, null_times = _known(facts, "counts", lambda: _row_counts(con, everything))
    # Hive `date=` partitions far outside the window are not read at all (a day of slack each
    # side, in case the export partitions by ingestion date); TimeGenerated is still exact.
    near = [names[f] for f, parts in files.items() if _near_window(parts, start, end)]
    window, bounds = _sql_window(types["TimeGenerated"], start, end)
    present = [c for c in columns if c in types]
    hourly, frame = [], pd.DataFrame({c: pd.Series([], dtype=object) for c in present})
    served = None
    if near and pieces is not None:
        near_files = [f for f in files if _near_window(files[f], start, end)]
        served = pieces.window(con, table, near_files, names, start, end, present, types, rules)
    if served is not None:
        hourly, frame = served
    elif near:
        params = {"files": near, **bounds}
        # One narrow pass over TimeGenerated in the window: rows per hour and the newest row.
        hourly = con.sql(
            f"SELECT epoch_ns(TimeGenerated) // 3600000000000 AS h, count(*), "
            f"max(epoch_ns(TimeGenerated)) FROM {_SRC} WHERE {window} GROUP BY h",
            params=params,
        ).fetchall()
        keep, literals = _sql_predicates(rules, types)
        frame = (
            con.sql(
                f"SELECT {', '.join(map(_ident, present))} FROM {_SRC} "
                f"WHERE {' AND '.join([window, *keep])}",
                params={**params, **literals},
            )
            .to_arrow_table()
            .to_pandas()
        )
    for c in missing:
        frame[c] = None
    frame["TimeGenerated"] = _ticks(pd.to_datetime(frame["TimeGenerated"], utc=True))
    for c, kind in columns.items():
        if kind == DYNAMIC and c in present and source_types[c] != "string":
            frame[c] = frame[c].map(
                lambda v: (
                    None
                    if v is None
                    else json.dumps(v, separators=(",", ":"), ensure_ascii=False, default=str)
                )
            )
    frame = _keep(frame, _left_to_frame(rules, types))
    quarantine = []
    if null_times:
        quarantine.append(
            {
                "table": table,
                "source": path,
                "line": None,
                "reason": "null TimeGenerated",
                "raw": None,
                "count": null_times,
                "kept": False,
            }
        )
    for c, kind in columns.items():
        if kind == DYNAMIC and c in present and len(frame):
            frame[c], fixed = _unicode_json_column(frame[c])
            if fixed:
                quarantine.append(
                    {
                        "table": table,
                        "source": path,
                        "line": None,
                        "column": c,
                        "reason": REPAIRED,
                        "raw": None,
                        "count": fixed,
                        "kept": True,
                    }
                )
    in_window = sum(n for _, n, _ in hourly)
    counts = {
        pd.Timestamp(h * 3600 * 10**9, tz="UTC").strftime("%Y-%m-%dT%H"): n for h, n, _ in hourly
    }
    newest = max((t for *_, t in hourly), default=None)
    newest = None if newest is None else pd.Timestamp(newest // 100 * 100, tz="UTC").isoformat()
    return Scan(
        table,
        _typed(frame, columns),
        path,
        "parquet",
        total,
        in_window,
        missing,
        quarantine,
        counts,
        newest,
        source_types,
    )


class _Pieces:
    """The window's candidate rows and hourly profile from the cached pieces of its files
    (cache.py), building the pieces that are missing: one DuckDB pass per file over every time,
    the same SQL predicates as the uncached scan. None when this scan cannot be served so (a
    file whose footer pyarrow cannot read, a file whose columns differ from the folder's): the
    caller then scans as without a cache, and reports what it finds as it always does.

    Missing pieces of local files are built on the builder threads (_builders), all of a
    window's at once: a day's file of one row group is one DuckDB thread's work, so two files
    (or both tables' new days, parquet.prepare) use both cores. A piece another scan, or
    prepare, is building already is waited for, not built twice."""

    def __init__(self, cache, storage, origin: dict):
        self.cache, self.storage, self.origin = cache, storage, origin

    def start(self, con, table, files, names, start, end, present, types, rules):
        """Each file's (piece, built) or the Future of one being read or built, in file
        order; None when the scan cannot be served from pieces."""
        keep, literals = _sql_predicates(rules, types)
        query = {
            "columns": {c: types[c] for c in present},
            "where": keep,
            "literals": literals,
            "rules": repr(rules),
        }
        todo = []
        for f in files:
            ident = cache_mod.identity(self.storage, self.origin[f])
            if ident is None:
                return None
            if ident.overlaps(start, end):
                todo.append((f, self.cache.key(table, f, ident, query)))
            else:
                cache_mod.count("skipped")
        out = []
        for f, key in todo:
            args = (names[f], present, types, keep, literals)
            piece = self.cache.remembered(key)
            if piece is not None:
                piece = (piece, False)
            elif getattr(self.storage, "fs", None) is not None:  # its own connection: here
                piece = _load_or_build(self.cache, key, self.storage, con, *args)
            else:  # read or built on the builder threads, beside this thread's work
                piece = self.cache.building(
                    key,
                    lambda a=args, k=key: _builders().submit(
                        _load_or_build, self.cache, k, self.storage, None, *a
                    ),
                )
            out.append(piece)
        return out

    def window(self, con, table, files, names, start, end, present, types, rules):
        started = self.start(con, table, files, names, start, end, present, types, rules)
        if started is None:
            return None
        pieces = []
        for done in started:
            if hasattr(done, "result"):  # being read or built: here, or ahead of this scan
                done = done.result()
            piece, built = done
            if piece is None:
                return None
            cache_mod.count("misses" if built else "hits")
            pieces.append(piece)
        frames, hourly = cache_mod.window_of(pieces, start, end)
        if not frames:
            return hourly, pd.DataFrame({c: pd.Series([], dtype=object) for c in present})
        frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        return hourly, frame

    @staticmethod
    def _build(con, name, present, types, keep, literals):
        """One file's piece: its candidate rows at any time and its hourly profile, as the
        uncached scan's two passes compute them without the window."""
        one = {"files": [name]}
        own = _types(con, one)
        if any(own.get(c) != types[c] for c in present):
            return None  # the folder's union of schemas differs from this file's: no piece
        timed = f"{_ident('TimeGenerated')} IS NOT NULL"
        hourly = con.sql(
            f"SELECT epoch_ns(TimeGenerated) // 3600000000000 AS h, count(*), "
            f"max(epoch_ns(TimeGenerated)) FROM {_SRC} WHERE {timed} GROUP BY h ORDER BY h",
            params=one,
        ).fetchall()
        rows = con.sql(
            f"SELECT {', '.join(map(_ident, present))} FROM {_SRC} "
            f"WHERE {' AND '.join([timed, *keep])}",
            params={**one, **literals},
        ).to_arrow_table()
        return rows, hourly


def _load_or_build(cache, key, storage, con, *args):
    """(piece, whether it was built): the cache's entry, else the piece built (on `con`, or
    this thread's own connection) and kept in the cache."""
    piece = cache.get(key)
    if piece is not None:
        return piece, False
    return _build_piece(cache, key, storage, con, *args), True


def _build_piece(cache, key, storage, con, *args):
    """Build one piece (on `con`, or a cursor of the builders' connection, closed after) and
    keep it in the cache."""
    own = con is None
    if own:
        con = _builders_connection().cursor()  # a cursor costs < 1 ms, a connection ~20
    try:
        if own:
            _settings(con)
        piece = _Pieces._build(con, *args)
    finally:
        if own:
            con.close()
    if piece is not None:
        cache.put(key, *piece)
    return piece


# The threads that build pieces, one per core, shared by every scan of the process (a range's
# two table readers, prepare). Made again in a forked child: a pool's threads do not survive
# a fork, and work queued to it would never run.
_POOL: tuple[int, ThreadPoolExecutor] | None = None
_POOL_LOCK = threading.Lock()
# The builders' DuckDB connection; each build takes a cursor of it and closes it. Not one per
# builder thread: a connection left in an idle thread's locals crashes a forked child (SIGSEGV,
# measured with duckdb 2.0), and Airflow and Celery fork.
_BASE: tuple[int, object] | None = None


def _builders_connection():
    import duckdb

    global _BASE
    with _POOL_LOCK:
        if _BASE is None or _BASE[0] != os.getpid():
            if _BASE is not None:
                _INHERITED.append(_BASE)
            _BASE = (os.getpid(), duckdb.connect())
        return _BASE[1]


def _builders() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid():
            workers = max(2, min(8, os.cpu_count() or 2))
            _POOL = (os.getpid(), ThreadPoolExecutor(workers, thread_name_prefix="piece-build"))
        return _POOL[1]


def prepare_parquet(storage, path, table: str, start, end, columns, rules, cache) -> None:
    """Start building the pieces a cached scan of [start, end) will need and the cache lacks,
    on the builder threads, and return at once: a daily run builds both tables' new days side
    by side, and a range the slices ahead of the one it reads. Anything unusual (no files, no
    footer, an unreadable file) is left to the scan, which reads the files and reports it as
    it always does: here it only means nothing is started."""
    import duckdb

    if cache is None or not cache_mod.servable(start, end):
        return
    if getattr(storage, "fs", None) is not None:
        return  # files behind fsspec are built by their scan, on its own connection
    try:
        files, origin = _listing(storage, path, table, columns, rules)
        con, _ = _connection(storage)
        try:
            _settings(con)
            names = {f: _duckdb_path(f, table, con) for f in files}
            facts = _folder_facts(storage, table, origin, ahead=True)
            types = _known(facts, "types", lambda: _types(con, {"files": list(names.values())}))
            if not types.get("TimeGenerated", "").startswith("TIMESTAMP"):
                return
            near = [f for f in files if _near_window(files[f], start, end)]
            present = [c for c in columns if c in types]
            _Pieces(cache, storage, origin).start(
                con, table, near, names, start, end, present, types, rules
            )
        except duckdb.Error:
            _THREAD.__dict__.pop("con", None)
            con.close()
    except (DetectionError, OSError, duckdb.Error):
        return


def _duckdb_path(path: str, table: str, con) -> str:
    """The path as DuckDB must be given it to read exactly this one file: DuckDB expands * ? [
    in a file name as a glob (a file named "*.parquet" would read every file beside it), so
    those are escaped as one-character classes, and the escaped name is checked to match
    only itself."""
    if not _GLOB.search(path):
        return path
    if "\\" in path:  # in a glob DuckDB splits at backslashes: the name has no escaped form
        raise SourceError(
            table,
            f"cannot read {path!r}: DuckDB reads a name holding both a "
            "backslash and * ? [ ] as a pattern (rename the file)",
        )
    pattern = _GLOB_ESCAPE.sub(lambda m: f"[{m.group()}]", path)
    matches = [m for (m,) in con.sql("SELECT file FROM glob($p)", params={"p": pattern}).fetchall()]
    if matches != [path]:
        raise SourceError(
            table,
            f"cannot read {path!r} by name alone (DuckDB matches "
            f"{len(matches)} file(s) for it; rename the file)",
        )
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


def _duckdb_error(con, exc, table: str, path: str, shown: dict[str, str], columns) -> SourceError:
    """DuckDB's error as a SourceError naming the table, the file and (invalid text) the
    column. Invalid UTF-8 is named, not quoted: the value could be anything, a secret too."""
    from ..connections import redact

    message = str(exc).split("\n")[0]
    where = next((f for f in shown if f in message), None)
    if "UTF8" in message or "UTF-8" in message:
        column = _column_with_invalid_text(con, where, columns) if where else None
        return SourceError(
            table,
            f"invalid UTF-8 in a string column of Parquet file "
            f"{shown[where] if where else path} (re-export it as UTF-8)",
            column,
        )
    place = f"file {shown[where]}" if where else f"folder {path}"
    return SourceError(table, f"cannot read Parquet {place}: {redact(message)}")


def _column_with_invalid_text(con, file: str, columns) -> str | None:
    """Which of the rule's string columns of `file` DuckDB refuses to decode."""
    import duckdb

    for column, kind in columns.items():
        if kind == DATETIME:
            continue
        try:
            con.sql(
                f"SELECT max(length({_ident(column)})) FROM read_parquet($f)",
                params={
                    "f": [
                        _GLOB_ESCAPE.sub(lambda m: f"[{m.group()}]", file)
                        if _GLOB.search(file)
                        else file
                    ]
                },
            ).fetchall()
        except duckdb.Error as exc:
            if "UTF8" in str(exc) or "UTF-8" in str(exc):
                return column
    return None


def _unicode_json_column(values: pd.Series) -> tuple[pd.Series, int]:
    """_unicode_json_text over a column; only rows with a surrogate escape are parsed."""
    maybe = values.astype("str").str.contains(_SURROGATE_ESCAPE.pattern, regex=True, na=False)
    if not maybe.any():
        return values, 0
    text = values.astype(object)  # Python strings for the few rows to repair: only then
    clean = text[maybe].map(_unicode_json_text)
    changed = clean != text[maybe]
    text = text.copy()
    text[maybe] = clean
    return text, int(changed.sum())


def _row_counts(con, everything: dict) -> tuple[int, int]:
    """Rows in the files and rows without a TimeGenerated, from the Parquet footers when the
    writer kept null counts (no data read), else by a scan of the one column. A file without a
    TimeGenerated column counts all its rows as null, as the scan reads them."""
    total = con.sql(
        "SELECT sum(num_rows) FROM parquet_file_metadata($files)", params=everything
    ).fetchall()[0][0]
    values, nulls, unknown = con.sql(
        "SELECT sum(num_values), sum(stats_null_count), count(*) FILTER (WHERE stats_null_count "
        "IS NULL) FROM parquet_metadata($files) WHERE path_in_schema = $column",
        params={**everything, "column": "TimeGenerated"},
    ).fetchall()[0]
    if total is not None and values is not None and not unknown:
        return int(total), int(nulls) + int(total) - int(values)
    total, missing = con.sql(
        f"SELECT count(*), count(*) FILTER (WHERE TimeGenerated IS NULL) FROM {_SRC}",
        params=everything,
    ).fetchall()[0]
    return int(total), int(missing)


def _sql_window(kind: str, start: pd.Timestamp, end: pd.Timestamp) -> tuple[str, dict]:
    """TimeGenerated in [start, end) at nanosecond precision, whatever the stored unit."""
    bounds = {"lo": start.as_unit("ns").value, "hi": end.as_unit("ns").value}
    col = _ident("TimeGenerated")
    if kind in ("TIMESTAMP_NS", "TIMESTAMPTZ_NS"):  # comparable with row-group statistics
        return (
            f"{col} >= make_timestamp_ns($lo)::{kind} AND {col} < make_timestamp_ns($hi)::{kind}"
        ), bounds
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


def _left_to_frame(rules, types: dict[str, str]) -> list:
    """The predicates `_keep` must still apply to the frame: those the SQL could not take
    (non-string columns), and `=~`, whose SQL lower() folds more than Python's (DuckDB lowers
    U+0130 to "i", Python to "i" + U+0307): the frame keeps the rows it always kept. `==` and
    `may_hold` mean the same in the SQL (byte equality; RE2 over an ASCII pattern) as in
    `_keep`, so the rows the scan kept are not tested again (27k wide UEBA texts a window)."""
    return [
        (column, op, literal)
        for column, op, literal in rules or ()
        if types.get(column) != "VARCHAR" or op == "=~"
    ]


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
