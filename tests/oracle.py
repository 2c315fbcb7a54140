"""An independent oracle for the rule: its own KQL text, run by duckdb-kql on DuckDB.

`kql_oracle(activity, ueba)` loads the two frames as the tables `AzureActivity` and
`BehaviorAnalytics`, runs the query read from `include/rules/runcommand_ueba_breach.yaml` (not a
copy of it), and returns the rows in a normalized form. `normalize_ours(df)` puts the result of
`include.detection.correlation.correlate` in the same form, so the two compare as multisets
(`as_counter`).

The normalized form, one dict per row keyed by `OUTPUT_COLUMNS`:
  * datetime -> ISO 8601 text in UTC with 9 fractional digits ("...T18:00:00.123456000+00:00");
    a naive datetime on our side is rendered without offset, so it cannot compare equal;
  * dynamic  -> canonical JSON, `json.dumps(value, sort_keys=True)`;
  * string   -> as-is.

How Kusto values are loaded into DuckDB (the oracle's *inputs*, not its semantics):
  * `TimeGenerated` -> TIMESTAMP (UTC wall time, microseconds). DuckDB's TIMESTAMP is
    microsecond-only, and duckdb-kql's `UEBAEventTime - 1h` turns even a TIMESTAMP_NS into a
    microsecond TIMESTAMP (rounded), so the `between` would not be exact at 100 ns. Frames with
    sub-microsecond times are refused (ValueError) rather than silently rounded.
  * string columns -> VARCHAR with null loaded as '' : Kusto strings are never null (a missing
    value *is* the empty string). Loading NULL would be wrong, not just different: DuckDB's
    GROUP BY would put a null CorrelationId and an empty one in two groups, Kusto in one.
  * dynamic columns (`ActivityInsights`, `UsersInsights`, given as JSON text) -> DuckDB JSON,
    which is how duckdb-kql represents `dynamic` (its type map: JSON <-> dynamic). Text that is
    valid (strict) JSON is cast to JSON by DuckDB itself; text that is not becomes a JSON
    *string* holding the text (a dynamic string, as Kusto's parse_json yields for invalid text,
    rule-semantics.md step 5); null stays SQL NULL. Validity is decided by Python's strict
    `json.loads` only because DuckDB's JSON reader is more lenient than JSON (it accepts
    trailing commas); the generators in test_differential.py avoid the forms where the two
    readers disagree (trailing commas, NaN/Infinity, lone surrogates).

Rewrites of the rule's query (each asserted to have happened exactly once):
  1. `| where list_ActivityStatusValue has_any ("Success", "Succeeded")` becomes
     `| where tostring(list_ActivityStatusValue) has_any ("Success", "Succeeded")`.
     Why: duckdb-kql's `make_list` yields a DuckDB VARCHAR[] and its `has_any` lowers to
     `regexp_matches(<column>, ...)`, which DuckDB refuses to bind on a list ("No function
     matches regexp_matches(VARCHAR[], VARCHAR)"). In Kusto `has_any` over a dynamic array
     searches the array's text, which is what `tostring(...)` makes explicit.
     Residual difference (excluded from generation, see the test module): duckdb-kql's
     `tostring` of a VARCHAR[] is DuckDB's list text `[a, b]`, not JSON, so a control character
     in a status is not JSON-escaped: Kusto sees "\\nSuccess" (term "nSuccess", no match), the
     oracle sees a raw newline (separator, match).
No other rewrite was needed: the rest of the query translates and runs as written.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import duckdb_kql
import duckdb_kql.engine
import pandas as pd
import pyarrow as pa
import yaml

from include.detection.correlation import OUTPUT_COLUMNS

RULE_PATH = (
    Path(__file__).resolve().parents[1] / "include" / "rules" / "runcommand_ueba_breach.yaml"
)

DATETIME_COLUMNS = ("StartTime", "EndTime", "UEBAEventTime")
DYNAMIC_COLUMNS = ("UEBAActivityInsights", "UEBAUsersInsights")
STRING_COLUMNS = tuple(c for c in OUTPUT_COLUMNS if c not in DATETIME_COLUMNS + DYNAMIC_COLUMNS)

HAS_ANY_LINE = '| where list_ActivityStatusValue has_any ("Success", "Succeeded")'
HAS_ANY_REWRITE = '| where tostring(list_ActivityStatusValue) has_any ("Success", "Succeeded")'

# Table layouts, in the types duckdb-kql maps to the rule's declared input types
# (datetime -> TIMESTAMP, string -> VARCHAR, dynamic -> JSON). "Authorization" is a DuckDB
# keyword, hence the quoting everywhere.
ACTIVITY_SCHEMA = {
    "TimeGenerated": "datetime",
    "OperationNameValue": "string",
    "Authorization": "string",
    "CorrelationId": "string",
    "Caller": "string",
    "CallerIpAddress": "string",
    "ActivityStatusValue": "string",
}
UEBA_SCHEMA = {
    "TimeGenerated": "datetime",
    "EventSource": "string",
    "ActivityInsights": "dynamic",
    "ActionType": "string",
    "UserPrincipalName": "string",
    "SourceIPLocation": "string",
    "UsersInsights": "dynamic",
}
_SQL_TYPE = {"datetime": "TIMESTAMP", "string": "VARCHAR", "dynamic": "JSON"}


# --- the query ---------------------------------------------------------------------------------


def rule_query() -> str:
    """The rule's KQL, verbatim from its YAML."""
    return yaml.safe_load(RULE_PATH.read_text(encoding="utf-8"))["query"]


def oracle_query() -> str:
    """The rule's KQL with the one rewrite duckdb-kql needs (see the module docstring)."""
    query = rule_query()
    assert query.count(HAS_ANY_LINE) == 1, "the has_any line to rewrite is no longer in the rule"
    rewritten = query.replace(HAS_ANY_LINE, HAS_ANY_REWRITE)
    assert rewritten != query and rewritten.count(HAS_ANY_REWRITE) == 1
    return rewritten


def _check_inputs_match_rule() -> None:
    """The rule YAML's declared inputs are the columns we load (catches a drifted rule)."""
    inputs = yaml.safe_load(RULE_PATH.read_text(encoding="utf-8"))["inputs"]
    assert inputs["AzureActivity"] == ACTIVITY_SCHEMA, inputs["AzureActivity"]
    assert inputs["BehaviorAnalytics"] == UEBA_SCHEMA, inputs["BehaviorAnalytics"]


def _create_tables(con) -> None:
    for table, schema in (("AzureActivity", ACTIVITY_SCHEMA), ("BehaviorAnalytics", UEBA_SCHEMA)):
        cols = ", ".join(f'"{c}" {_SQL_TYPE[t]}' for c, t in schema.items())
        con.execute(f'CREATE OR REPLACE TABLE "{table}" ({cols})')


@functools.lru_cache(maxsize=1)
def translated_sql() -> str:
    """The oracle query as DuckDB SQL.

    Exactly what `duckdb_kql.query(con, q)` does (to_sql with the connection's schema, then run
    it), but translated once per process: the ANTLR parse is the slow part, and the schema is
    always the same two tables.
    """
    _check_inputs_match_rule()
    con = duckdb_kql.connect()
    try:
        _create_tables(con)
        result = duckdb_kql.to_sql(oracle_query(), schema=duckdb_kql.engine.schema(con))
        assert not result.parameters and not result.unbound
        return str(result)
    finally:
        con.close()


# --- loading the frames -----------------------------------------------------------------------


def _is_null(v: Any) -> bool:
    return v is None or (not isinstance(v, (str, dict, list)) and bool(pd.isna(v)))


def _times_us(series: pd.Series) -> pa.Array:
    """datetime64[ns, UTC] -> naive TIMESTAMP in UTC, microseconds; refuses sub-µs values."""
    s = pd.to_datetime(series, utc=True)
    out = []
    for t in s:
        if _is_null(t):
            out.append(None)
            continue
        ns = t.value
        if ns % 1000:
            raise ValueError(
                f"oracle: {t} has sub-microsecond precision; DuckDB TIMESTAMP is microsecond-only"
            )
        out.append(ns // 1000)
    return pa.array(out, pa.int64()).cast(pa.timestamp("us"))


def _strings(series: pd.Series) -> pa.Array:
    return pa.array([None if _is_null(v) else str(v) for v in series], pa.string())


def _is_strict_json(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):  # nested deeper than a parser goes: invalid, as
        return False  # kql.parse_json takes it (the text stays a string)
    return True


def _arrow_table(frame: pd.DataFrame, schema: dict[str, str]) -> pa.Table:
    cols: dict[str, pa.Array] = {}
    for col, kind in schema.items():
        series = frame[col]  # every column the rule reads must be there (KeyError otherwise)
        if kind == "datetime":
            cols[col] = _times_us(series)
        elif kind == "string":
            cols[col] = _strings(series)
        else:  # dynamic, as JSON text
            values = [
                None if _is_null(v) else (v if isinstance(v, str) else json.dumps(v))
                for v in series
            ]
            cols[col] = pa.array(values, pa.string())
            cols[f"{col}__valid"] = pa.array(
                [None if v is None else _is_strict_json(v) for v in values], pa.bool_()
            )
    return pa.table(cols)


def _insert(con, table: str, schema: dict[str, str], source: str) -> None:
    exprs = []
    for col, kind in schema.items():
        q = f'"{col}"'
        if kind == "string":
            exprs.append(f"coalesce({q}, '')")  # Kusto strings are never null
        elif kind == "dynamic":
            exprs.append(
                f'CASE WHEN {q} IS NULL THEN NULL WHEN "{col}__valid" '
                f"THEN CAST({q} AS JSON) ELSE to_json({q}) END"
            )
        else:
            exprs.append(q)
    con.execute(f'INSERT INTO "{table}" SELECT {", ".join(exprs)} FROM {source}')


def load(con, activity: pd.DataFrame, ueba: pd.DataFrame) -> None:
    """Fill AzureActivity and BehaviorAnalytics on *con* (tables created by `_create_tables`)."""
    for table, frame, schema in (
        ("AzureActivity", activity, ACTIVITY_SCHEMA),
        ("BehaviorAnalytics", ueba, UEBA_SCHEMA),
    ):
        con.execute(f'DELETE FROM "{table}"')
        src = f"__src_{table}"
        con.register(src, _arrow_table(frame, schema))
        try:
            _insert(con, table, schema, src)
        finally:
            con.unregister(src)


@functools.lru_cache(maxsize=1)
def _connection():
    """One connection per process, its tables created once and the query prepared once.

    Planning the translated SQL costs more than running it on a few rows, and a property test
    runs it hundreds of times. Each call empties and refills the same tables, so the prepared
    statement stays bound to them.
    """
    con = duckdb_kql.connect()  # sets TimeZone='UTC', which the generated SQL assumes
    _create_tables(con)
    con.execute("PREPARE rule_query AS " + translated_sql())
    return con


# --- running and normalizing ----------------------------------------------------------------


def _iso_ns(ns: int) -> str:
    return pd.Timestamp(ns, unit="ns", tz="UTC").isoformat(timespec="nanoseconds")


def _canonical_json(value: Any) -> str:
    """Canonical JSON text of a dynamic value. What JSON cannot hold (NaN, numpy scalars...)
    becomes a marker string, so it shows up in a diff instead of crashing or comparing equal."""
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return f"<not JSON: {type(value).__module__}.{type(value).__name__} {value!r}>"


def kql_oracle(activity: pd.DataFrame, ueba: pd.DataFrame) -> list[dict]:
    """Run the rule's KQL (via duckdb-kql) over the two frames; normalized rows."""
    con = _connection()
    load(con, activity, ueba)
    con.execute("SET TimeZone='UTC'")
    cursor = con.execute("EXECUTE rule_query")
    columns = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    assert columns == OUTPUT_COLUMNS, columns
    out = []
    for row in rows:
        rec = dict(zip(columns, row))
        norm = {}
        for c in OUTPUT_COLUMNS:
            v = rec[c]
            if c in DATETIME_COLUMNS:
                assert isinstance(v, dt.datetime) and v.tzinfo is None, (c, v)
                norm[c] = _iso_ns(_epoch_us(v) * 1000)
            elif c in DYNAMIC_COLUMNS:
                # DuckDB returns JSON as its text; SQL NULL is Kusto's null.
                norm[c] = _canonical_json(None if v is None else json.loads(v))
            else:
                # A Kusto string is never null: NULL here can only mean "".
                norm[c] = "" if v is None else v
        out.append(norm)
    return out


_EPOCH = dt.datetime(1970, 1, 1)


def _epoch_us(v: dt.datetime) -> int:
    delta = v - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def normalize_ours(df: pd.DataFrame) -> list[dict]:
    """`correlate`'s result in the oracle's normalized form.

    Deliberately not forgiving: a null string stays None (the contract is "" never null), a naive
    datetime renders without an offset, a dynamic value left as JSON text becomes a JSON string.
    Any of these then shows up as a difference instead of being normalized away.
    """
    missing = [c for c in OUTPUT_COLUMNS if c not in df.columns]
    assert not missing, f"missing output columns {missing}"
    out = []
    for rec in df[OUTPUT_COLUMNS].to_dict(orient="records"):
        norm = {}
        for c in OUTPUT_COLUMNS:
            v = rec[c]
            if c in DATETIME_COLUMNS:
                if _is_null(v):
                    norm[c] = None
                else:
                    ts = pd.Timestamp(v)
                    norm[c] = (
                        ts.isoformat(timespec="nanoseconds")
                        if ts.tzinfo is None
                        else _iso_ns(ts.tz_convert("UTC").value)
                    )
            elif c in DYNAMIC_COLUMNS:
                norm[c] = _canonical_json(v)
            else:
                norm[c] = None if _is_null(v) else v
        out.append(norm)
    return out


# --- comparing --------------------------------------------------------------------------------


def row_key(row: dict) -> tuple:
    return tuple(row[c] for c in OUTPUT_COLUMNS)


def as_counter(rows: Iterable[dict]) -> Counter:
    return Counter(row_key(r) for r in rows)


def describe_diff(ours: list[dict], oracle: list[dict]) -> str:
    """Readable multiset difference: rows only on one side, with their multiplicities."""
    a, b = as_counter(ours), as_counter(oracle)
    lines = [f"ours: {sum(a.values())} rows, oracle: {sum(b.values())} rows"]
    for title, diff in (
        ("only in ours (correlate)", a - b),
        ("only in oracle (duckdb-kql)", b - a),
    ):
        if diff:
            lines.append(f"--- {title}:")
            for key, n in sorted(diff.items(), key=lambda kv: repr(kv[0])):
                lines.append(f"  x{n}")
                lines.extend(f"    {c} = {v!r}" for c, v in zip(OUTPUT_COLUMNS, key))
    return "\n".join(lines)
