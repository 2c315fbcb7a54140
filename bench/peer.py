r"""The reference peer: the rule as ONE DuckDB SQL query over the same Parquet files.

    python -m bench.peer --source LAKE --end 2026-10-30T00:00:00Z [--period-hours 48] \
        --out result.parquet
    python -m bench.peer --source LAKE --from 2026-10-29 --to 2026-11-11 [--every-hours 24] \
        --out r.parquet

Faithful to the KQL semantics (shared/reference/rule-semantics.md) as far as DuckDB SQL allows:

* query period: `TimeGenerated` in [end - 2d, end) on both tables, compared as TIMESTAMPTZ_NS
  (DuckDB >= 1.5 reads Parquet `timestamp[ns, UTC]` as TIMESTAMPTZ_NS; comparing it with a
  TIMESTAMP / TIMESTAMPTZ value or doing INTERVAL arithmetic on it silently rounds to the
  microsecond, so bounds are TIMESTAMPTZ_NS literals and time arithmetic is on epoch_ns());
* `=~`: lower() equality;
* `has "virtualMachines"`: a regex whole-term match, ASCII case folding only (a term is a maximal
  run of ASCII letters and digits; `[Vv][Ii]...` rather than lower(), which folds Unicode);
* `summarize ... by` with null keys as '' (Kusto strings are never null);
* `list has_any (...)`: a whole-term regex over the list's JSON text, `to_json(list(...))`, as
  Kusto searches the text of the dynamic array (JSON escapes fuse with the following term);
* `parse_json(Authorization).scope`: NULL when the text is not valid JSON (tolerated, no error);
* `split(...)[2]`, `[-1]`: string_split with 1-based / negative indexes, out of range -> '';
* `ActivityInsights.ActionUncommonlyPerformedByUser == "True"`: json_extract_string (JSON true
  becomes 'true', no match), invalid JSON tolerated;
* `join kind=inner` on tolower(), `between` inclusive, on epoch nanoseconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

RUN_COMMAND = "MICROSOFT.COMPUTE/VIRTUALMACHINES/RUNCOMMAND/ACTION"
_ALNUM = "0-9A-Za-z"


def _ascii_ci(term: str) -> str:
    """A regex matching `term` with ASCII-only case folding."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in term)


def has_term(*terms: str) -> str:
    """Kusto `has` / `has_any` as an RE2 pattern: a whole term, ASCII case-insensitive."""
    alternatives = "|".join(_ascii_ci(t) for t in terms)
    return f"(^|[^{_ALNUM}])({alternatives})([^{_ALNUM}]|$)"


def _ts(value: datetime) -> str:
    return f"'{value.astimezone(timezone.utc).strftime('%Y-%m-%d %H:%M:%S.%f')}+00'::TIMESTAMPTZ_NS"


def _glob(source: Path, table: str) -> str:
    """The table's files as a SQL string literal (a quote in the path doubled, as SQL escapes
    it: the query is printed by --print-sql and must stay one literal)."""
    path = f"{(Path(source) / table).as_posix()}/**/*.parquet".replace("'", "''")
    return f"'{path}'"


def _scan(source: Path, table: str) -> str:
    return f"read_parquet({_glob(source, table)}, hive_partitioning = true, union_by_name = true)"


def query(source: Path, end: datetime, period: timedelta = timedelta(days=2)) -> str:
    start = end - period
    window = f"TimeGenerated >= {_ts(start)} AND TimeGenerated < {_ts(end)}"
    return f"""
WITH
activity AS (        -- AzureActivity, rule columns, query period
    SELECT TimeGenerated,
           coalesce(CorrelationId, '')   AS CorrelationId,
           coalesce("Authorization", '') AS "Authorization",
           coalesce(Caller, '')          AS Caller,
           coalesce(CallerIpAddress, '') AS CallerIpAddress,
           coalesce(ActivityStatusValue, '') AS ActivityStatusValue
    FROM {_scan(source, "AzureActivity")}
    WHERE {window}
      -- | where OperationNameValue =~ "MICROSOFT.COMPUTE/VIRTUALMACHINES/RUNCOMMAND/ACTION"
      AND lower(coalesce(OperationNameValue, '')) = '{RUN_COMMAND.lower()}'
      -- | where Authorization has "virtualMachines"
      AND regexp_matches(coalesce("Authorization", ''), '{has_term("virtualMachines")}')
),
runs AS (            -- | summarize ... by CorrelationId, Authorization, Caller
    SELECT min(TimeGenerated) AS StartTime, max(TimeGenerated) AS EndTime,
           max(CallerIpAddress) AS max_CallerIpAddress,
           to_json(list(ActivityStatusValue)) AS list_ActivityStatusValue,
           CorrelationId, "Authorization", Caller
    FROM activity
    GROUP BY CorrelationId, "Authorization", Caller
),
succeeded AS (       -- | where list_ActivityStatusValue has_any ("Success", "Succeeded") \
| extend ...
    SELECT *, string_split(coalesce(
                  CASE WHEN json_valid("Authorization")
                       THEN json_extract_string("Authorization", '$.scope') END, ''), \
'/') AS Scope_s
    FROM runs
    WHERE regexp_matches(list_ActivityStatusValue, '{has_term("Success", "Succeeded")}')
),
left_side AS (       -- | project ... | extend joinkey = tolower(Caller)
    SELECT StartTime, EndTime,
           coalesce(Scope_s[3], '')  AS Subscription,        -- tostring(Scope_s[2])
           coalesce(Scope_s[-1], '') AS VirtualMachineName,  -- tostring(Scope_s[-1])
           CorrelationId, Caller, max_CallerIpAddress AS CallerIpAddress,
           lower(Caller) AS joinkey
    FROM succeeded
),
right_side AS (      -- BehaviorAnalytics: uncommon Azure AD activity with a user and a place
    SELECT TimeGenerated AS UEBAEventTime,
           coalesce(ActionType, '') AS UEBAActionType,
           coalesce(UserPrincipalName, '') AS UserPrincipalName,
           coalesce(SourceIPLocation, '') AS UEBASourceIPLocation,
           ActivityInsights AS UEBAActivityInsights,
           UsersInsights AS UEBAUsersInsights,
           lower(coalesce(UserPrincipalName, '')) AS joinkey
    FROM {_scan(source, "BehaviorAnalytics")}
    WHERE {window}
      AND EventSource = 'Azure AD'
      AND (CASE WHEN json_valid(ActivityInsights)
                THEN json_extract_string(ActivityInsights, '$.ActionUncommonlyPerformedByUser') \
END) = 'True'
      AND coalesce(UserPrincipalName, '') <> ''
      AND coalesce(SourceIPLocation, '') <> ''
)
SELECT l.StartTime, l.EndTime, l.Subscription, l.VirtualMachineName, l.Caller, l.CallerIpAddress,
       r.UEBAEventTime, r.UEBAActionType, r.UEBASourceIPLocation, r.UEBAActivityInsights,
       r.UEBAUsersInsights,
       coalesce(string_split(l.Caller, '@')[1], '') AS AccountName,
       coalesce(string_split(l.Caller, '@')[2], '') AS AccountUPNSuffix
FROM left_side l
JOIN right_side r ON l.joinkey = r.joinkey                    -- join kind=inner
WHERE epoch_ns(l.StartTime) BETWEEN epoch_ns(r.UEBAEventTime) - {3600 * 10**9}
                                AND epoch_ns(r.UEBAEventTime) + {6 * 3600 * 10**9}
"""


def run(
    source: Path,
    end: datetime,
    out: Path,
    period: timedelta = timedelta(days=2),
    threads: int | None = None,
    memory_limit: str | None = None,
) -> int:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    sql = query(source, end, period)
    rows = con.execute(f"COPY ({sql}) TO '{tmp.as_posix()}' (FORMAT parquet)").fetchone()[0]
    tmp.replace(out)
    return int(rows)


def run_range(
    source: Path,
    first: datetime,
    last: datetime,
    every: timedelta,
    out: Path,
    period: timedelta = timedelta(days=2),
    threads: int | None = None,
) -> int:
    """The same query looped over every window ending at first, first + every, ... last, on one
    connection in one process (as a back-fill script would), into one Parquet file with a leading
    WindowEnd column (ISO 8601 UTC, as `detect --from --to` writes it)."""
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    rows, writer, end = 0, None, first
    try:
        while end <= last:
            table = con.sql(query(source, end, period)).to_arrow_table()
            label = end.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            table = table.add_column(
                0, "WindowEnd", pa.array([label] * table.num_rows, pa.string())
            )
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
            rows += table.num_rows
            end += every
    finally:
        if writer is not None:
            writer.close()
    tmp.replace(out)
    return rows


def parse_end(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (
        value.replace(tzinfo=timezone.utc)
        if value.tzinfo is None
        else value.astimezone(timezone.utc)
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.peer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--source", type=Path, required=True)
    p.add_argument("--end", help="window end, ISO 8601 UTC (exclusive)")
    p.add_argument("--from", dest="first", help="a range: the first window's end")
    p.add_argument("--to", dest="last", help="the last window's end (included)")
    p.add_argument("--every-hours", type=float, default=24)
    p.add_argument("--period-hours", type=float, default=48)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--memory-limit", default=None)
    p.add_argument("--print-sql", action="store_true")
    a = p.parse_args(argv)
    period = timedelta(hours=a.period_hours)
    if a.first or a.last:
        t0 = time.perf_counter()
        rows = run_range(
            a.source,
            parse_end(a.first),
            parse_end(a.last),
            timedelta(hours=a.every_hours),
            a.out,
            period,
            a.threads,
        )
        print(f"duckdb peer: {rows} rows in {time.perf_counter() - t0:.2f}s", file=sys.stderr)
        return 0
    if not a.end:
        p.error("--end, or --from and --to")
    end = parse_end(a.end)
    if a.print_sql:
        print(query(a.source, end, period))
        return 0
    t0 = time.perf_counter()
    rows = run(a.source, end, a.out, period, a.threads, a.memory_limit)
    print(f"duckdb peer: {rows} rows in {time.perf_counter() - t0:.2f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
