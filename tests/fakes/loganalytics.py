"""A Log Analytics query API on 127.0.0.1 that really evaluates the KQL it is sent.

    POST /v1/workspaces/<workspace-id>/query          {"query": ..., "timespan": ...}
    POST /v1/subscriptions/.../workspaces/<name>/query (resource-centric)

Each workspace's tables live in an in-memory DuckDB database and every query runs through
duckdb-kql (a KQL engine of its own, not our renderer read backwards), so a wrong filter or
projection gives wrong rows. Answers use the wire format: `{"tables": [{"name": "PrimaryResult",
"columns": [{"name", "type"}], "rows": [...]}]}`, datetimes as ISO text with up to 7 fractional
digits (trailing zeros trimmed, as the service does), dynamic values as JSON text.

Behaviour, combinable:
  token=...             requests must carry `Authorization: Bearer <token>` (else 401)
  cap=N                 an answer with more than N rows is a partial result: the first N rows and
                        `error: PartialError / E_QUERY_RESULT_SET_TOO_LARGE`
  require_window=True   a query that does not start `<Table> | where TimeGenerated >= datetime(..)
                        and TimeGenerated < datetime(..)` is refused (400)
  throttle_first()      the next request answers 429 with Retry-After
  fail(status=..., times=..., path=<workspace>)   injected 401 / 403 / 500 / 204 (tests/fakes/http)
Every query received is recorded in `queries` (workspace, table, kind, window, rows returned).

One known deviation of duckdb-kql is corrected here: it bins datetimes through a double
(`floor(epoch(t) / 3600) * 3600`), which puts a row 100 ns before an hour into the next hour;
the fake rewrites that hour bin to integer nanoseconds (DuckDB's date_trunc would not do: it
casts to microseconds first, rounding .9999999 up to the next hour too).

Manual use (serves a source folder, any layout `sources` reads):
    python -m tests.fakes.loganalytics --source DIR [--workspace GUID] [--port 18090] [--cap N]
                                       [--throttle-first] [--seconds 900]
It prints the settings to export for `detect --source loganalytics://<GUID>`. With
`--write-duckdb FILE` it writes the tables to a DuckDB file instead, for
`duckdb-kql serve FILE -p 31415` and `detect --source kusto://127.0.0.1:31415/<file stem>`
(duckdb-kql answers at microsecond precision).
"""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime, timezone

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .http import FakeService, Request

WORKSPACE = "6f2c3a1e-8d4b-4c1a-9e7f-2b5d8a9c0e11"
TOKEN = "la-fake-token-7c41e9d2"
# Kusto type -> DuckDB type of a stored column
_DUCK = {
    "datetime": "TIMESTAMP_NS",
    "string": "VARCHAR",
    "dynamic": "JSON",
    "guid": "UUID",
    "long": "BIGINT",
    "int": "INTEGER",
    "real": "DOUBLE",
    "bool": "BOOLEAN",
}
_WINDOWED = re.compile(
    r"^\s*(?P<table>[A-Za-z_][A-Za-z0-9_]*)\s*\|\s*where "
    r"TimeGenerated >= datetime\((?P<start>[^)]+)\)"
    r" and TimeGenerated < datetime\((?P<end>[^)]+)\)\s*(?:\||$)"
)
_HOUR_BIN = re.compile(
    r"to_timestamp\(floor\(epoch\((?P<v>[^()]+)\) / epoch\(INTERVAL '1h'\)\) \* "
    r"epoch\(INTERVAL '1h'\)\) AT TIME ZONE 'UTC'"
)
_HOUR_NS = 3600 * 10**9
_PATH = re.compile(r"^/v1/(?:workspaces/(?P<id>[^/]+)|(?P<rid>subscriptions/.+))/query$")


def _error(code: str, message: str, inner: str | None = None) -> dict:
    error = {"code": code, "message": message}
    if inner:
        error["innererror"] = {"code": inner, "message": message}
    return {"error": error}


def _kusto_time(ns: int) -> str:
    """100 ns ticks as Log Analytics writes them: 2026-11-01T10:00:00.1234567Z, zeros trimmed."""
    seconds, rest = divmod(ns, 10**9)
    text = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{rest // 100:07d}".rstrip("0")
    return text + (f".{fraction}" if fraction else "") + "Z"


def _dynamic(value):
    """A dynamic value as Kusto stores it: parsed JSON, written back compactly."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            pass  # not JSON: a dynamic string
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _text(value):
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, (dict, list)):  # a JSON column given as an object (as in an export)
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return value if isinstance(value, str) else str(value)


def load_table(con, name: str, rows, types: dict[str, str]) -> None:
    """Rows (dicts as in a JSONL export, or a frame as `sources` returns) into DuckDB."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    arrays, casts = {}, []
    for column, kind in types.items():
        values = frame[column] if column in frame else pd.Series([None] * len(frame), dtype=object)
        if kind == "datetime":
            times = pd.to_datetime(values, format="ISO8601", utc=True).dt.as_unit("ns")
            if times.isna().any():
                raise ValueError(f"{name}.{column}: Log Analytics holds no row without a time")
            arrays[column] = pa.array(
                times.dt.floor("100ns").dt.tz_localize(None).astype("int64"), pa.int64()
            )
            casts.append(f'make_timestamp_ns("{column}") AS "{column}"')
            continue
        convert = _dynamic if kind == "dynamic" else _text
        arrays[column] = pa.array([convert(v) for v in values], pa.string())
        casts.append(f'CAST("{column}" AS {_DUCK[kind]}) AS "{column}"')
    con.register("_incoming", pa.table(arrays) if arrays else pa.table({}))
    con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT {", ".join(casts)} FROM _incoming')
    con.unregister("_incoming")


class FakeLogAnalytics(FakeService):
    name = "fake-loganalytics"

    def __init__(
        self,
        workspaces: dict,
        types: dict | None = None,
        token: str | None = TOKEN,
        cap: int | None = None,
        require_window: bool = True,
        port: int = 0,
        schemas: dict | None = None,
    ):
        """workspaces: {workspace id or resource id: {table: rows}}; types: {table: {column:
        Kusto type}} (default: the rule's inputs, plus string for any other column); schemas:
        {workspace: types} for a workspace whose tables differ."""
        super().__init__(port)
        import duckdb_kql

        from include.detection.rule import load_rule

        self.token, self.cap, self.require_window = token, cap, require_window
        self.queries: list[dict] = []
        self._db_lock = threading.Lock()
        self._cons = {}
        inputs = load_rule().inputs
        for workspace, tables in workspaces.items():
            con = duckdb_kql.connect()
            own = (schemas or {}).get(workspace) or types or {}
            for table, rows in tables.items():
                declared = dict(own.get(table) or inputs.get(table) or {})
                sample = (
                    rows.columns if isinstance(rows, pd.DataFrame) else {k for r in rows for k in r}
                )
                declared.update({c: "string" for c in sample if c not in declared})
                load_table(con, table, rows, declared)
            self._cons[workspace.lower()] = con

    def stop(self) -> None:
        super().stop()
        with self._db_lock:
            for con in self._cons.values():
                con.close()
            self._cons.clear()

    def throttle_first(self, seconds: int = 1, times: int = 1) -> None:
        self.fail(
            times=times,
            status=429,
            headers={"Retry-After": str(seconds)},
            body=json.dumps(_error("Throttled", "Too many requests (fake)")),
        )

    def authorized(self, req: Request) -> bool:
        return True  # checked in handle(), to answer in the service's error shape

    # --- one request ------------------------------------------------------------------------------

    def handle(self, req: Request):
        match = _PATH.match(req.path)
        if req.method != "POST" or not match:
            return 404, _error("PathNotFoundError", f"no route {req.method} {req.path}"), {}
        if self.token is not None and req.headers.get("authorization") != f"Bearer {self.token}":
            return (
                401,
                _error(
                    "AuthenticationFailed",
                    "Authentication failed (fake): missing or invalid bearer token",
                ),
                {},
            )
        if "application/json" not in req.headers.get("content-type", ""):
            return 200, b"", {}  # what the service does without a JSON content type
        workspace = (match.group("id") or "/" + match.group("rid")).lower()
        con = self._cons.get(workspace)
        if con is None:
            return 404, _error("WorkspaceNotFoundError", f"workspace {workspace} not found"), {}
        body = req.json or {}
        query = body.get("query") or ""
        window = _WINDOWED.match(query)
        record = {
            "workspace": workspace,
            "query": query,
            "timespan": body.get("timespan"),
            "table": window.group("table") if window else None,
            "window": (window.group("start"), window.group("end")) if window else None,
            "kind": _kind(query),
            "rows": None,
            "truncated": False,
        }
        with self.lock:
            self.queries.append(record)
        if self.require_window and not window:
            return (
                400,
                _error(
                    "BadArgumentError",
                    "fake: the query does not filter TimeGenerated to a window first",
                    "SemanticError",
                ),
                {},
            )
        try:
            columns, rows = self._run(con, query)
        except Exception as exc:  # a KQL or DuckDB error: the service's 400
            return (
                400,
                _error("BadArgumentError", f"{type(exc).__name__}: {exc}", "SemanticError"),
                {},
            )
        payload = {"tables": [{"name": "PrimaryResult", "columns": columns, "rows": rows}]}
        if self.cap is not None and len(rows) > self.cap:
            payload["tables"][0]["rows"] = rows[: self.cap]
            payload["error"] = {
                "code": "PartialError",
                "message": "Response contained partial errors",
                "details": [
                    {
                        "code": "EngineError",
                        "message": "Something went wrong processing your query on the server.",
                        "innererror": {
                            "code": "-2133196797",
                            "severity": 2,
                            "severityName": "Error",
                            "message": f"Query result set has exceeded the internal record "
                            f"count limit {self.cap} (E_QUERY_RESULT_SET_TOO_LARGE;"
                            f" see https://aka.ms/kustoquerylimits)",
                        },
                    }
                ],
            }
            record["truncated"] = True
        record["rows"] = len(payload["tables"][0]["rows"])
        return 200, payload, {}

    def _run(self, con, query: str):
        import duckdb_kql
        from duckdb_kql.types import kusto_type

        sql = _HOUR_BIN.sub(
            lambda m: f"make_timestamp_ns(epoch_ns({m.group('v')}) // {_HOUR_NS} * {_HOUR_NS})",
            str(duckdb_kql.to_sql(query)),
        )
        with self._db_lock:
            rel = con.sql(sql)
            kinds = [kusto_type(t) for t in rel.types]
            table = rel.arrow()
            if isinstance(table, pa.RecordBatchReader):
                table = table.read_all()
        columns = [{"name": n, "type": k} for n, k in zip(table.column_names, kinds)]
        data = []
        for column in table.columns:
            if pa.types.is_timestamp(column.type):
                ns = pc.cast(pc.cast(column, pa.timestamp("ns")), pa.int64()).to_pylist()
                data.append([None if v is None else _kusto_time(v) for v in ns])
            else:
                data.append(column.to_pylist())
        return columns, [list(row) for row in zip(*data)] if data else []

    # --- for assertions ---------------------------------------------------------------------------

    def sent(self, kind: str | None = None, table: str | None = None) -> list[dict]:
        with self.lock:
            return [
                q
                for q in self.queries
                if (kind is None or q["kind"] == kind) and (table is None or q["table"] == table)
            ]


def _kind(query: str) -> str:
    if "| take 0" in query:
        return "schema"
    if "| summarize" in query:
        return "profile"
    if "| project" in query:
        return "rows"
    return "other"


# --- rows for the differential tests (and the manual server's default) ----------------------------

WINDOW = ("2026-10-30T00:00:00Z", "2026-11-01T00:00:00Z")


def sample_tables(precision: str = "100ns") -> dict[str, list[dict]]:
    """Both tables for WINDOW, with the cases a remote scan could get wrong: rows on and just
    past both window edges, the 7th fractional digit, a case-variant operation name, non-ASCII,
    quotes and backslashes, nulls, dynamic values as objects, as text and \\u-escaped, and an
    insight that only a text search would take for a match. precision="us" rounds the times to
    microseconds (duckdb-kql serve answers at microsecond precision)."""
    from tests.factories import activity_row, authorization, run_command, ueba_row

    def t(text: str) -> str:
        if precision == "us":  # drop the 7th digit: 2026-...:59.9999999Z -> :59.999999Z
            return re.sub(r"(\.\d{6})\d", r"\1", text)
        return text

    other = "MICROSOFT.RESOURCES/DEPLOYMENTS/WRITE"
    activity = [
        *run_command("corr-1", start=t("2026-10-31T10:00:00.1234567Z")),
        *[
            {**r, "OperationNameValue": r["OperationNameValue"].lower()}
            for r in run_command("corr-2", start="2026-10-30T03:00:00Z", Caller="Bob@Contoso.com")
        ],
        *run_command(
            "corr-3",
            start=t("2026-10-31T23:59:57.9999999Z"),
            Caller="zoë@contoso.com",
            Authorization=authorization(note='quote " backslash \\ end'),
        ),
        activity_row(CorrelationId="edge-start", TimeGenerated="2026-10-30T00:00:00Z"),
        activity_row(CorrelationId="edge-before", TimeGenerated=t("2026-10-29T23:59:59.9999999Z")),
        activity_row(CorrelationId="edge-end", TimeGenerated="2026-11-01T00:00:00Z"),
        activity_row(
            CorrelationId="no-ip",
            CallerIpAddress=None,
            TimeGenerated="2026-10-31T08:00:00Z",
            Authorization={"scope": "/subscriptions/s/virtualMachines/vm-obj"},
        ),
        *[
            activity_row(
                CorrelationId=f"noise-{i}",
                OperationNameValue=other,
                TimeGenerated=f"2026-10-3{i % 2}T{i % 24:02d}:15:00Z",
            )
            for i in range(40)
        ],
    ]
    insight = {"ActionUncommonlyPerformedByUser": "True"}
    ueba = [
        ueba_row(
            TimeGenerated=t("2026-10-31T09:30:00.7654321Z"),
            ActivityInsights=insight,
            UsersInsights={"IsDormantAccount": "False", "City": "Zürich"},
        ),
        ueba_row(
            TimeGenerated="2026-10-30T02:30:00Z",
            UserPrincipalName="bob@contoso.com",
            ActivityInsights='{"ActionUncommonlyPerformedByUser" : "\\u0054rue"}',
        ),
        ueba_row(
            TimeGenerated=t("2026-10-31T23:59:59.9999999Z"),
            UserPrincipalName="zoë@contoso.com",
            ActivityInsights=insight,
        ),
        ueba_row(TimeGenerated="2026-10-31T09:00:00Z", ActivityInsights={"Nested": insight}),
        ueba_row(
            TimeGenerated="2026-10-31T09:10:00Z",
            ActivityInsights={"ActionUncommonlyPerformedByUser": True},
        ),
        ueba_row(TimeGenerated="2026-10-31T09:20:00Z", EventSource="azure ad"),
        ueba_row(TimeGenerated="2026-10-31T09:40:00Z", EventSource="Azure AD", UsersInsights=None),
        *[
            ueba_row(TimeGenerated=f"2026-10-30T{i:02d}:45:00Z", EventSource="Other")
            for i in range(12)
        ],
    ]
    return {"AzureActivity": activity, "BehaviorAnalytics": ueba}


def _interrupt(*_):
    raise KeyboardInterrupt


def main() -> int:
    import argparse
    import signal
    import time

    from include.detection import sources
    from include.detection.rule import load_rule

    p = argparse.ArgumentParser(prog="python -m tests.fakes.loganalytics")
    p.add_argument("--source", required=True, help="a folder `sources` reads")
    p.add_argument("--workspace", default=WORKSPACE)
    p.add_argument("--port", type=int, default=18090)
    p.add_argument("--cap", type=int, default=None)
    p.add_argument("--throttle-first", action="store_true")
    p.add_argument("--seconds", type=float, default=900)
    p.add_argument(
        "--write-duckdb",
        metavar="FILE",
        default=None,
        help="write the tables to a DuckDB file for `duckdb-kql serve FILE` and exit",
    )
    args = p.parse_args()
    inputs = load_rule().inputs
    far = (pd.Timestamp("1900-01-01", tz="UTC"), pd.Timestamp("2200-01-01", tz="UTC"))
    tables = {
        t: sources.read_table(args.source, t, *far, inputs[t], prefilter=False).frame
        for t in inputs
    }
    if args.write_duckdb:
        from pathlib import Path

        import duckdb

        con = duckdb.connect(args.write_duckdb)
        for table, frame in tables.items():
            load_table(con, table, frame, inputs[table])
        con.close()
        print(
            f".venv/bin/duckdb-kql serve {args.write_duckdb} -p 31415\n"
            f"# detect --source kusto://127.0.0.1:31415/{Path(args.write_duckdb).stem}"
        )
        return 0
    fake = FakeLogAnalytics({args.workspace: tables}, cap=args.cap, port=args.port).start()
    if args.throttle_first:
        fake.throttle_first()
    print(
        f"export DETECTION_LOGANALYTICS_ENDPOINT={fake.url} "
        f"DETECTION_LOGANALYTICS_TOKEN={fake.token}\n"
        f"# detect --source loganalytics://{args.workspace}",
        flush=True,
    )
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as Ctrl-C does
    try:
        time.sleep(args.seconds)
    except KeyboardInterrupt:
        pass
    fake.stop()
    print(f"{len(fake.queries)} queries answered")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
