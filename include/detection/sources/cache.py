"""The scan cache: what a scan keeps of ONE Parquet source file, stored once per file so a file
read once is not decoded again until it changes (issue #13).

A piece of a file holds the rows that pass the pushed-down predicates (correlation.PUSHDOWN) at
ANY time, with only the rule's columns, exactly as DuckDB's scan returns them, and the file's
hourly profile (rows and newest time per hour, every row with a time). A window whose start and
end fall on whole hours is served from the pieces of its files: the rows cut to the window, the
hours inside it summed, the newest of those hours taken; parquet.py then finishes the Scan with
the same code as an uncached scan, so the frame, counts, quarantine and quality numbers are the
same. Everything else a scan reports (rows in the files, null times, column types) comes from
the files' footers on every scan, as without the cache.

A piece is keyed by the file's identity (path, size, modification time in ns, the SHA-256 of its
Parquet footer) and by what the scan asks (the rule's columns and their types as stored, the
pushed-down SQL and its literals, VERSION): a file rewritten, appended to or replaced gets a new
key, so nothing stale is served; a rule change likewise. A file that vanished is simply not
listed any more. Entries live under `DETECTION_CACHE` (default $DETECTION_HOME/cache; `off`
disables it) as <root>/arrow/<key[:2]>/<key>.arrow, an Arrow IPC file (zstd) with the key repeated
in its metadata: a piece is a few thousand wide JSON texts, which Arrow IPC gives back ~10x
faster than Parquet (measured: 13,908 UEBA rows, 40 ms -> 3 ms), at about the same size.
An entry that cannot be read or whose key differs (truncated, half-written, corrupt) is ignored
and rebuilt. Entries are written to a unique temporary name, then renamed: two processes filling
the same entry at once each rename a whole file, and a reader sees the old, the new, or none.

`DETECTION_CACHE` may also be a URL (memory://, s3://, abfs://: include/detection/storage.py),
for workers that share nothing but storage: an entry is then one object written in one go (a
reader sees all of it or none), read back whole. A folder on each worker's own disk is faster and
just as correct (entries are keyed by the file, not by the worker).

Remote services (Log Analytics, Azure Data Explorer) and JSON/CSV sources are not cached here.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path

import pandas as pd

from .. import storage as shared

# Bump when what a piece holds, or how it is read, changes: older entries are then never used.
VERSION = 2  # 2: entries are Arrow IPC files (zstd), read 10x faster than Parquet
HOUR_NS = 3600 * 10**9
_FOOTER_TAIL = 64 << 10  # one read from the end usually holds the whole footer
_KEY_FIELD = b"detection.cache.key"
_HOURLY_FIELD = b"detection.cache.hourly"

# How many pieces were read from the cache or built, and files decoded (tests and bench look).
STATS = {"hits": 0, "misses": 0, "skipped": 0, "corrupt": 0}
_STATS_LOCK = threading.Lock()  # a range reads its tables on threads of their own


def count(what: str) -> None:
    with _STATS_LOCK:
        STATS[what] += 1


def servable(start: pd.Timestamp, end: pd.Timestamp) -> bool:
    """Pieces profile whole hours: a window must start and end on one (the DAG's and the range
    mode's windows do; any other window is scanned as without a cache). Times before 1970 are
    left out: DuckDB's integer division rounds their hour toward zero."""
    lo, hi = start.as_unit("ns").value, end.as_unit("ns").value
    return lo >= HOUR_NS and lo % HOUR_NS == 0 and hi % HOUR_NS == 0


class Identity:
    """What names one version of a file: size, mtime (ns), its footer's hash; and the footer's
    TimeGenerated range over all row groups (None: unknown, the file must be read)."""

    def __init__(self, size: int, mtime: str, footer: str, lo, hi):
        self.size, self.mtime, self.footer, self.lo, self.hi = size, mtime, footer, lo, hi

    def overlaps(self, start: pd.Timestamp, end: pd.Timestamp) -> bool:
        if self.lo is None or self.hi is None:
            return True
        return self.hi >= start and self.lo < end


# Identities of local files already read in this process, by path: (stat stamp, Identity).
# A range scans each file's folder once per slice, and every scan names every file (its
# footer's counts and types are the source's): the footer is hashed again only when the stat
# differs. The stamp holds the inode change time, which no writer sets back (os.utime sets it
# to now), so a file rewritten in place with its size and mtime restored still differs; and
# only files unchanged for _SETTLED_NS are remembered, so a file system whose times are
# coarse (a second or two) cannot hide a rewrite within one tick (git's "racy" files).
_IDENTITIES: dict[str, tuple] = {}
_SETTLED_NS = 3 * 10**9


def identity(storage, path) -> Identity | None:
    """The file's identity, from a stat and one read of its tail; None when it has no readable
    Parquet footer (the scan is then made without the cache, which reports the file as ever)."""
    if getattr(storage, "fs", None) is not None:
        return _identity(storage, path)
    try:
        st = os.stat(path)
    except OSError:
        return None
    stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    known = _IDENTITIES.get(str(path))
    if known is not None and known[0] == stamp:
        return known[1]
    ident = _identity(storage, path, st)
    settled = time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > _SETTLED_NS
    if ident is not None and settled:
        _IDENTITIES[str(path)] = (stamp, ident)
    return ident


def _identity(storage, path, st=None) -> Identity | None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if getattr(storage, "fs", None) is None:  # this machine
            st = st or os.stat(path)
            size, mtime = st.st_size, str(st.st_mtime_ns)
            with open(path, "rb") as fh:
                tail = _tail(fh, size)
        else:
            info = storage.fs.info(path)
            size = int(info.get("size") or 0)
            stamp = next(
                (
                    info[k]
                    for k in ("mtime", "last_modified", "LastModified", "etag", "ETag", "created")
                    if info.get(k) is not None
                ),
                "",
            )
            mtime = str(stamp)
            with storage.fs.open(path, "rb") as fh:
                tail = _tail(fh, size)
    except (OSError, ValueError):
        return None
    if len(tail) < 12 or tail[-4:] != b"PAR1":
        return None
    length = int.from_bytes(tail[-8:-4], "little")
    if length + 8 > len(tail):
        if length + 8 > size:
            return None  # the footer says it is longer than the file
        try:
            opener = (
                open(path, "rb")
                if getattr(storage, "fs", None) is None
                else storage.fs.open(path, "rb")
            )
            with opener as fh:
                tail = _tail(fh, size, length + 8)
        except (OSError, ValueError):
            return None
    footer = tail[-(length + 8) :]
    try:
        meta = pq.read_metadata(pa.BufferReader(b"PAR1" + footer))
        lo, hi = _time_range(meta)
    except Exception:  # pyarrow raises several kinds for a damaged footer
        return None
    return Identity(size, mtime, hashlib.sha256(footer).hexdigest(), lo, hi)


def _tail(fh, size: int, want: int = _FOOTER_TAIL) -> bytes:
    n = min(size, want)
    fh.seek(size - n)
    return fh.read(n)


def _time_range(meta):
    """TimeGenerated's min and max over every row group, from the footer's statistics; None
    when any row group lacks them (or holds no such column): the file is then read."""
    names = [meta.schema.column(i).path for i in range(meta.num_columns)]
    if "TimeGenerated" not in names:
        return None, None
    col = names.index("TimeGenerated")
    lo = hi = None
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        if group.num_rows == 0:
            continue
        stats = group.column(col).statistics
        if stats is None or not stats.has_min_max:
            return None, None
        try:
            a, b = _utc(stats.min), _utc(stats.max)
        except (TypeError, ValueError):
            return None, None
        lo = a if lo is None else min(lo, a)
        hi = b if hi is None else max(hi, b)
    if lo is None:  # no rows at all: nothing of it is in any window
        return pd.Timestamp.max.tz_localize("UTC"), pd.Timestamp.min.tz_localize("UTC")
    return lo, hi


def _utc(value) -> pd.Timestamp:
    if not hasattr(value, "year"):  # INT96 and other untyped statistics: unusable
        raise TypeError("not a timestamp")
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


# How much of the pieces a Cache keeps in memory (Arrow bytes), beside the entries on disk.
MEMORY_BYTES = 256 << 20


class Cache:
    """Pieces under `root` (see the module doc). A Cache also keeps the pieces it read or built
    in memory, newest used first, up to MEMORY_BYTES: a piece built ahead of its scan (on the
    builder threads, parquet.prepare) or used by two slices of a range is not read back from
    disk. Memory only ever holds an entry as written under its key, and a key names one version
    of a file, so it is never staler than the disk. `building` lets a scan wait for a piece
    another thread is building instead of decoding the file a second time."""

    def __init__(self, root):
        local = shared.local_path(os.fspath(root))  # a path or file:// URL; None: object storage
        self.local = local is not None
        self.root = local if self.local else os.fspath(root).rstrip("/")
        self._lock = threading.RLock()  # a future's callback may run at once, in the holder
        self._memory: OrderedDict[str, tuple] = OrderedDict()
        self._memory_bytes = 0
        self._building: dict = {}

    def _remember(self, key: str, piece: tuple) -> None:
        size = piece[0].nbytes
        if size > MEMORY_BYTES:
            return
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                return
            self._memory[key] = piece
            self._memory_bytes += size
            while self._memory_bytes > MEMORY_BYTES:
                _, (old, _) = self._memory.popitem(last=False)
                self._memory_bytes -= old.nbytes

    def remembered(self, key: str):
        """The piece `key` if memory holds it (no disk read), else None."""
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                return self._memory[key]
        return None

    def building(self, key: str, start):
        """The Future of the piece `key` being built; `start()` submits the build (returning
        its Future) only when no thread is building it already."""
        with self._lock:
            future = self._building.get(key)
            if future is None:
                future = self._building[key] = start()
                future.add_done_callback(lambda _: self._forget_build(key, future))
            return future

    def _forget_build(self, key: str, future) -> None:
        with self._lock:
            if self._building.get(key) is future:
                del self._building[key]

    def __repr__(self) -> str:
        return f"Cache({str(self.root)!r})"

    def key(self, table: str, name: str, ident: Identity, query: dict) -> str:
        text = json.dumps(
            {
                "v": VERSION,
                "table": table,
                "file": name,
                "size": ident.size,
                "mtime": ident.mtime,
                "footer": ident.footer,
                "query": query,
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(text.encode()).hexdigest()

    def path(self, key: str) -> Path | str:
        if self.local:
            return self.root / "arrow" / key[:2] / f"{key}.arrow"
        return shared.join(self.root, "arrow", key[:2], f"{key}.arrow")

    def get(self, key: str):
        """(arrow table, hourly [(hour, rows, newest ns)]) of an entry, or None when there is
        none or it is not whole (truncated, half-written, another key's): then it is rebuilt."""
        import pyarrow as pa

        known = self.remembered(key)
        if known is not None:
            return known
        path = self.path(key)
        try:
            if self.local:
                with open(path, "rb") as fh:
                    data = fh.read()
            else:
                data = shared.read_bytes(path)
        except FileNotFoundError:
            return None
        except Exception:  # unreadable, or storage unreachable: a miss, the file is read instead
            count("corrupt")
            return None
        try:
            with pa.ipc.open_file(pa.BufferReader(data)) as reader:
                table = reader.read_all()
            meta = table.schema.metadata or {}
            if meta.get(_KEY_FIELD) != key.encode():
                raise ValueError("another key")
            hourly = [tuple(int(x) for x in row) for row in json.loads(meta[_HOURLY_FIELD])]
        except Exception:  # any damage at all: the entry is rebuilt, never trusted
            count("corrupt")
            return None
        piece = (table.replace_schema_metadata(None), hourly)
        self._remember(key, piece)
        return piece

    def put(self, key: str, table, hourly) -> None:
        """Write the entry under a unique temporary name, then rename it into place (on object
        storage: one object written in one go). A cache that cannot be written (read-only,
        disk full, storage down) only costs the next scan a re-read."""
        import pyarrow as pa

        self._remember(key, (table, hourly))
        meta = {
            _KEY_FIELD: key.encode(),
            _HOURLY_FIELD: json.dumps([list(h) for h in hourly]).encode(),
        }
        stamped = table.replace_schema_metadata(meta)
        sink = pa.BufferOutputStream()
        options = pa.ipc.IpcWriteOptions(compression="zstd")
        with pa.ipc.new_file(sink, stamped.schema, options=options) as writer:
            writer.write_table(stamped)
        data = sink.getvalue().to_pybytes()
        try:  # a unique temporary name renamed into place; on object storage one object
            shared.write_bytes(self.path(key), data)
        except Exception:  # an unwritable cache only costs the next scan a re-read
            pass


def from_setting(value) -> Cache | None:
    """A Cache from FilesSource's `cache` argument: None -> config.cache(), False -> none, a
    path or a Cache as it is."""
    if value is False:
        return None
    if isinstance(value, Cache):
        return value
    if value is None:
        from .. import config

        root = config.cache()
        return Cache(root) if root is not None else None
    return Cache(value)


def window_of(pieces, start: pd.Timestamp, end: pd.Timestamp):
    """The candidate rows (pandas, in file order) and hourly rows [(hour, rows, newest ns)] of
    [start, end) (whole hours) from pieces [(arrow table, hourly)]."""
    import pyarrow as pa
    import pyarrow.compute as pc

    lo, hi = start.as_unit("ns").value, end.as_unit("ns").value
    frames, hourly = [], {}
    for table, hours in pieces:
        for h, n, newest in hours:
            if lo <= h * HOUR_NS < hi:
                old = hourly.get(h)
                hourly[h] = (h, n + (old[1] if old else 0), max(newest, old[2]) if old else newest)
        if table.num_rows:
            # Cut in Arrow, before pandas: a piece usually lies inside the window whole (a
            # day's file, a window of whole days), and then nothing is copied. The stored
            # integers count the column's unit since the epoch (UTC, or naive read as UTC);
            # the bounds are whole hours, so they divide exactly.
            times = table.column("TimeGenerated")
            per = _UNIT_NS[times.type.unit]
            ticks = pc.cast(times, pa.int64())
            keep = pc.and_(pc.greater_equal(ticks, lo // per), pc.less(ticks, hi // per))
            keep = keep.fill_null(False)
            if not pc.all(keep).as_py():
                table = table.filter(keep)
            frames.append(table.to_pandas())
    return frames, list(hourly.values())


_UNIT_NS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
