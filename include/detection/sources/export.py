"""The layout Azure Monitor's workspace data export writes to a storage account:

    am-<table, lowercase>/WorkspaceResourceId=/subscriptions/<sub>/resourcegroups/<rg>/providers/
        microsoft.operationalinsights/workspaces/<name>/y=YYYY/m=MM/d=DD/h=HH/m=MM/PT05M.json

JSON Lines with Log Analytics column names (older exports write one `PT1H.json` an hour). The
source names the storage root holding the `am-*` containers (a local folder, or the account:
`abfs://<account>.dfs.core.windows.net/`); a table whose container is there is read in this
layout (folder.FilesSource.locate).

The folders are the time a record was exported, not its TimeGenerated: only the hour folders that
can hold rows of [start, end) are listed and read, with a slack each side for late records
(DETECTION_EXPORT_SLACK, default 1h), and TimeGenerated is then filtered exactly. A record
exported more than the slack after its TimeGenerated is not read: raise the slack for a
workspace with a long ingestion delay.

An export of several workspaces keeps each under its resource id; a scan reads every workspace
unless told which (`FilesSource.only`, one mapped task per workspace in the DAG), so the rows of
two tenants are only ever mixed when asked for, as `loganalytics://<id1>,<id2>` mixes them.
Anything in the layout that does not fit it is a SourceError naming the entry, never skipped.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pandas as pd

from ..errors import SourceError, UsageError
from . import records
from .scan import Scan

# The folders of a workspace's resource id (None: any name), matched without regard to case.
RESOURCE = (
    "WorkspaceResourceId=",
    "subscriptions",
    None,
    "resourcegroups",
    None,
    "providers",
    "microsoft.operationalinsights",
    "workspaces",
    None,
)
_TIME = {
    "y": re.compile(r"y=(\d{4})"),
    "m": re.compile(r"m=(\d{2})"),
    "d": re.compile(r"d=(\d{2})"),
}
_HOUR = re.compile(r"h=(\d{2})")
_MINUTE = re.compile(r"m=(\d{2})")
DEFAULT_SLACK = timedelta(hours=1)


def container(table: str) -> str:
    return f"am-{table.lower()}"


def slack_from_env(value=None) -> timedelta:
    import os

    from ..rule import parse_timespan

    text = value if value is not None else os.environ.get("DETECTION_EXPORT_SLACK")
    if text is None or text == "":
        return DEFAULT_SLACK
    if isinstance(text, timedelta):
        if text < timedelta(0):
            raise UsageError(f"export slack must not be negative: {text}")
        return text
    if re.fullmatch(r"0+(\.0*)?[smhd]?", str(text).strip()):
        return timedelta(0)
    try:
        return parse_timespan(str(text).strip())
    except UsageError:
        raise UsageError(
            f"DETECTION_EXPORT_SLACK: not a duration: {text!r} (e.g. 1h, 90m, 0)"
        ) from None


def workspaces(storage, folder, table: str) -> dict[str, object]:
    """{resource id: its folder} of every workspace exported under the container `folder`."""
    level = [(folder, ())]
    for expected in RESOURCE:
        deeper = []
        for path, names in level:
            for name, is_dir in storage.children(path, table):
                if name.startswith((".", "_")):
                    continue
                inner = storage.join(path, name)
                if not is_dir or (expected is not None and name.lower() != expected.lower()):
                    what = "folder" if is_dir else "file"
                    raise SourceError(
                        table,
                        (
                            f"unexpected {what} {storage.display(inner)} in the data export layout "
                            f"(expected {_expected(names)})"
                        ),
                    )
                deeper.append((inner, (*names, name)))
        level = deeper
    found = {"/" + "/".join(names[1:]): path for path, names in level}
    if not found:
        raise SourceError(
            table,
            f"no workspace in the data export container "
            f"{storage.display(folder)} (expected {_expected(())})",
        )
    return found


def _expected(names: tuple) -> str:
    shown = [
        n if n is not None else f"<{w}>"
        for n, w in zip(
            RESOURCE, ("", "", "subscription", "", "resource group", "", "", "", "name")
        )
    ]
    return "/".join(shown[: len(names) + 1]) + (" ..." if len(names) + 1 < len(RESOURCE) else "")


def hour_files(storage, folder, table: str, lo: pd.Timestamp, hi: pd.Timestamp) -> list:
    """The files of one workspace's folder whose hour can hold a record exported in [lo, hi),
    in time order. Years, months and days outside it are not listed at all; one listing per day
    inside it (a single call to an object store)."""
    found = []
    for y, ypath in _level(storage, folder, table, "y"):
        if not lo.year <= y <= hi.year:
            continue
        for m, mpath in _level(storage, ypath, table, "m"):
            first = _date(storage, mpath, table, y, m, 1)
            if not _overlaps(first, first + pd.offsets.MonthBegin(1), lo, hi):
                continue
            for d, dpath in _level(storage, mpath, table, "d"):
                day = _date(storage, dpath, table, y, m, d)
                if not _overlaps(day, day + pd.Timedelta(days=1), lo, hi):
                    continue
                for path, parts in storage.files(dpath, table).items():
                    hour = _hour(storage, path, parts, table)
                    if _overlaps(day + hour, day + hour + pd.Timedelta(hours=1), lo, hi):
                        found.append(path)
    return found


def _level(storage, path, table: str, key: str):
    """(number, folder) of the `key=NN` folders under `path`."""
    pattern = _TIME[key]
    for name, is_dir in storage.children(path, table):
        if name.startswith((".", "_")):
            continue
        inner = storage.join(path, name)
        match = pattern.fullmatch(name)
        if not is_dir or not match:
            raise SourceError(
                table,
                f"unexpected {'folder' if is_dir else 'file'} "
                f"{storage.display(inner)} in the data export layout "
                f"(expected a folder {key}={'YYYY' if key == 'y' else 'NN'})",
            )
        yield int(match.group(1)), inner


def _date(storage, path, table: str, y: int, m: int, d: int) -> pd.Timestamp:
    try:
        return pd.Timestamp(year=y, month=m, day=d, tz="UTC")
    except ValueError:
        raise SourceError(
            table,
            f"{storage.display(path)}: not a date ({y:04d}-{m:02d}-{d:02d}) "
            "in the data export layout",
        ) from None


def _hour(storage, path, parts: tuple, table: str) -> pd.Timedelta:
    """A day's file must be h=HH/m=MM/<name>.json."""
    ok = (
        len(parts) == 3
        and _HOUR.fullmatch(parts[0])
        and _MINUTE.fullmatch(parts[1])
        and parts[2].endswith(".json")
    )
    hour = int(parts[0][2:]) if ok else None
    if not ok or hour > 23 or int(parts[1][2:]) > 59:
        raise SourceError(
            table,
            f"unexpected file {storage.display(path)} in the data export "
            "layout (expected h=HH/m=MM/PT05M.json or PT1H.json under a day)",
        )
    return pd.Timedelta(hours=hour)


def _overlaps(a: pd.Timestamp, b: pd.Timestamp, lo: pd.Timestamp, hi: pd.Timestamp) -> bool:
    return a < hi and b > lo


def read(
    storage,
    folder,
    table: str,
    start,
    end,
    columns,
    rules,
    only=None,
    slack: timedelta = DEFAULT_SLACK,
) -> Scan:
    """The table's rows for [start, end) from the export container `folder`: every workspace's,
    or those in `only` (resource ids)."""
    found = workspaces(storage, folder, table)
    chosen = sorted(found)
    if only:
        lower = {w.lower(): w for w in found}
        absent = [w for w in only if w.lower() not in lower]
        if absent:
            raise SourceError(
                table,
                f"workspace {', '.join(absent)} has no data export in "
                f"{storage.display(folder)} (found: {', '.join(chosen)})",
            )
        chosen = [lower[w.lower()] for w in only]
    lo, hi = pd.Timestamp(start) - slack, pd.Timestamp(end) + slack
    paths = [p for w in chosen for p in hour_files(storage, found[w], table, lo, hi)]
    return records.read_jsonl(
        storage,
        paths,
        table,
        start,
        end,
        columns,
        rules,
        source=storage.display(folder),
        fmt="export",
    )
