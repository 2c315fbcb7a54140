"""The same rows written in every layout a `files` source reads, on local disk or on an fsspec
filesystem: JSON Lines, Hive-partitioned Parquet, a portal CSV export, and Azure Monitor's
workspace data export (am-<table>/WorkspaceResourceId=/.../y=/m=/d=/h=/m=/PT05M.json).

Rows are dicts as in a JSONL export (tests.fakes.loganalytics.sample_tables, demo tables via
`rows_of`). Every writer puts bytes through `put(relative path, bytes)`: `on_disk(folder)` or
`on_fsspec(fs, root)`.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

WORKSPACE_ID = (
    "/subscriptions/0a1b2c3d-0000-4000-8000-00000000000a/resourcegroups/soc-rg/"
    "providers/microsoft.operationalinsights/workspaces/sentinel-west"
)
OTHER_WORKSPACE_ID = (
    "/subscriptions/0a1b2c3d-0000-4000-8000-00000000000b/resourcegroups/"
    "tenant-b/providers/microsoft.operationalinsights/workspaces/sentinel-b"
)


def on_disk(folder):
    def put(relative: str, data: bytes) -> None:
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    return put


def on_fsspec(fs, root: str):
    def put(relative: str, data: bytes) -> None:
        fs.pipe(f"{root.rstrip('/')}/{relative}", data)

    return put


def _line(row: dict) -> bytes:
    return (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")


def _text(value):
    """A value as a string column holds it (objects as compact JSON, as the readers make it)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def _time(row: dict) -> pd.Timestamp:
    return pd.Timestamp(row["TimeGenerated"]).tz_convert("UTC")


def jsonl(put, tables: dict[str, list[dict]]) -> None:
    for table, rows in tables.items():
        put(f"{table}.jsonl", b"".join(_line(r) for r in rows))


def parquet(put, tables: dict[str, list[dict]], columns: dict[str, dict]) -> None:
    """<Table>/date=YYYY-MM-DD/part-0.parquet, TimeGenerated timestamp[ns, UTC], the other
    columns of `columns` ({table: {column: type}}) as strings."""
    for table, rows in tables.items():
        names = [c for c in columns[table] if c != "TimeGenerated"]
        by_day = defaultdict(list)
        for row in rows:
            by_day[_time(row).strftime("%Y-%m-%d")].append(row)
        for day, part in sorted(by_day.items()):
            times = pd.to_datetime([r["TimeGenerated"] for r in part], utc=True, format="ISO8601")
            data = {
                "TimeGenerated": pa.array(
                    times.as_unit("ns").tz_localize(None).asi8, pa.int64()
                ).cast(pa.timestamp("ns", tz="UTC"))
            }
            for name in names:
                data[name] = pa.array([_text(r.get(name)) for r in part], pa.string())
            buffer = io.BytesIO()
            pq.write_table(pa.table(data), buffer)
            put(f"{table}/date={day}/part-0.parquet", buffer.getvalue())


def portal_csv(put, tables: dict[str, list[dict]], columns: dict[str, dict]) -> None:
    """What the Log Analytics portal exports: `TimeGenerated [UTC]`, every value as text."""
    for table, rows in tables.items():
        names = list(columns[table])
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([f"{n} [UTC]" if n == "TimeGenerated" else n for n in names])
        for row in rows:
            writer.writerow(["" if row.get(n) is None else _text(row.get(n)) for n in names])
        put(f"{table}.csv", out.getvalue().encode("utf-8"))


def export_path(table: str, workspace: str, exported: pd.Timestamp, hourly: bool = False) -> str:
    """Where the data export puts a record exported at `exported`."""
    minute = 0 if hourly else exported.minute // 5 * 5
    name = "PT1H.json" if hourly else "PT05M.json"
    return (
        f"am-{table.lower()}/WorkspaceResourceId={workspace}/"
        f"y={exported:%Y}/m={exported:%m}/d={exported:%d}/h={exported:%H}/"
        f"m={minute:02d}/{name}"
    )


def export(
    put,
    tables: dict[str, list[dict]],
    workspace: str = WORKSPACE_ID,
    delay=lambda row, i: pd.Timedelta(0),
    hourly_before=None,
) -> None:
    """The data export's layout: each record in the file of the time it was exported
    (TimeGenerated + delay(row, index)); hours before `hourly_before` as the older PT1H.json."""
    for table, rows in tables.items():
        files: dict[str, list[bytes]] = defaultdict(list)
        for i, row in enumerate(rows):
            exported = _time(row) + delay(row, i)
            hourly = hourly_before is not None and exported < pd.Timestamp(hourly_before)
            files[export_path(table, workspace, exported, hourly)].append(_line(row))
        for path, lines in files.items():
            put(path, b"".join(lines))


def rows_of(tables: dict[str, pa.Table]) -> dict[str, list[dict]]:
    """Arrow tables (demo.generate) as JSONL-shaped dicts, as demo.write_jsonl writes them."""
    from detection_tools import lakegen as demo

    out = {}
    for name, table in tables.items():
        data = {c: table.column(c).to_pylist() for c in table.column_names if c != "TimeGenerated"}
        data["TimeGenerated"] = list(
            demo._iso(table.column("TimeGenerated").cast(pa.int64()).to_numpy())
        )
        for c in demo.DYNAMIC_COLUMNS.get(name, ()):
            data[c] = [demo._parse_dynamic(v) for v in data[c]]
        names = table.column_names
        out[name] = [dict(zip(names, values)) for values in zip(*(data[c] for c in names))]
    return out
