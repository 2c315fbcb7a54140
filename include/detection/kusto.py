"""KQL text for the sources that hold the tables in a Kusto engine (Log Analytics, Azure Data
Explorer): the one place where a value, a name or a time becomes query text.

The Log Analytics query API has no query parameters, so every literal is written into the query:
`literal` is the only function that does it, `ident` the only one that writes a name, `datetime`
the only one that writes a time. The queries a remote source sends are rendered here:

  schema   <Table> | where <window> | take 0             the table's columns and types, no rows
  profile  <Table> | where <window> | summarize rows = count(), newest = max(TimeGenerated)
                                      by bin(TimeGenerated, 1h)
  rows     <Table> | where <window> | where <the rule's first `where` of this side>
                   | project <the rule's input columns>

<window> is `TimeGenerated >= datetime(start) and TimeGenerated < datetime(end)`, at Kusto's
100 ns precision. The pushed-down `where` is rendered from `correlation.PUSHDOWN` and reads as
the rule's own KQL line (a test holds the two equal), so Kusto evaluates exactly the rule's
predicate there; the local correlation still applies every step.
"""

from __future__ import annotations

import re
from datetime import datetime as _datetime
from typing import Iterable, Sequence

import pandas as pd

from .errors import UsageError

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# /subscriptions/<guid>/resourceGroups/<rg>/providers/Microsoft.OperationalInsights/workspaces/<n>
# (resource group names: letters, digits, _-.() and no trailing dot; workspace names: 4-63 of
# letters, digits and hyphens)
RESOURCE_ID = re.compile(
    r"/subscriptions/(?P<sub>" + GUID.pattern + r")/resourcegroups/(?P<rg>[\w\-.()]{1,90})"
    r"/providers/microsoft\.operationalinsights/workspaces/(?P<name>[A-Za-z0-9][A-Za-z0-9-]{2,62})",
    re.IGNORECASE,
)

# The escapes both Kusto's lexer and duckdb-kql decode (Kusto.Language's own literal writer uses
# the same set, plus \a \b \f, which duckdb-kql reads as the bare letter). A double-quoted KQL
# literal may hold any other character as itself: only the quote, the backslash, CR and LF end
# or break it.
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ESCAPED = re.compile(r'[\\"\n\r\t]')
_SURROGATE = re.compile("[\ud800-\udfff]")


def literal(value: str) -> str:
    """`value` as a double-quoted KQL string literal that reads back as exactly `value`."""
    if not isinstance(value, str):
        raise TypeError(f"a KQL string literal needs a str, not {type(value).__name__}")
    if _SURROGATE.search(value):
        # Not encodable as UTF-8, so it could not reach the server as the same text.
        raise UsageError(f"cannot put a lone surrogate into a KQL literal: {value!r}")
    return '"' + _ESCAPED.sub(lambda m: _ESCAPES[m.group()], value) + '"'


def ident(name: str) -> str:
    """A table or column name, checked against the allow-list pattern (never quoted or escaped:
    a name that needs escaping is not one the rule may use)."""
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
        raise UsageError(
            f"not an allowed KQL name: {name!r} (expected letters, digits and _, "
            f"not starting with a digit)"
        )
    return name


def ticks(value) -> pd.Timestamp:
    """A time as a UTC Timestamp on Kusto's 100 ns grid, rounded up: a row time t (always on the
    grid) satisfies t >= value exactly when t >= ticks(value), and likewise for <."""
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.as_unit("ns").ceil("100ns")


def datetime(value: pd.Timestamp | _datetime | str) -> str:
    """`datetime(2026-11-01T00:00:00.0000000Z)`: UTC with all 7 fractional digits."""
    ts = ticks(value)
    return f"datetime({ts.strftime('%Y-%m-%dT%H:%M:%S')}.{ts.value % 10**9 // 100:07d}Z)"


def workspace_id(text: str) -> str:
    """A Log Analytics workspace: its id (a GUID) or its Azure resource id."""
    text = str(text).strip()
    if GUID.fullmatch(text):
        return text.lower()
    if RESOURCE_ID.fullmatch(text):
        return text
    raise UsageError(
        f"not a Log Analytics workspace id or resource id: {text!r} (expected a "
        f"GUID such as 00000000-0000-0000-0000-000000000000, or /subscriptions/<id>/"
        f"resourceGroups/<group>/providers/Microsoft.OperationalInsights/"
        f"workspaces/<name>)"
    )


# --- the queries ---------------------------------------------------------------------------------


def window(start, end) -> str:
    return f"TimeGenerated >= {datetime(start)} and TimeGenerated < {datetime(end)}"


def predicate(rule: tuple, column_type: str | None = None) -> str:
    """One pushed-down predicate (correlation.PUSHDOWN) as the rule writes it in KQL.

    `may_hold` is the local scan's cheap necessary condition for the rule's
    `Column.Key == "value"`; Kusto evaluates that predicate itself, exactly. A column that holds
    the JSON as a string (an ADX mirror may) is parsed first, as the local correlation does.
    """
    column, op, operand = rule
    if op in ("=~", "=="):
        return f"{ident(column)} {op} {literal(operand)}"
    if op == "may_hold":
        key, value = operand
        target = (
            ident(column) if column_type in (None, "dynamic") else f"parse_json({ident(column)})"
        )
        return f"{target}.{ident(key)} == {literal(value)}"
    raise UsageError(f"no KQL for the pushed-down operator {op!r} on {column!r}")


def pushdown(rules: Iterable[tuple], types: dict[str, str] | None = None) -> str | None:
    """The side's first `where`, for the columns the table has (as the local scan skips a
    predicate on a missing column), or None."""
    types = types or {}
    parts = [predicate(r, types.get(r[0])) for r in rules or () if not types or r[0] in types]
    return " and ".join(parts) if parts else None


def schema_query(table: str, start, end) -> str:
    return f"{ident(table)}\n| where {window(start, end)}\n| take 0"


def profile_query(table: str, start, end) -> str:
    return (
        f"{ident(table)}\n| where {window(start, end)}\n"
        f"| summarize rows = count(), newest = max(TimeGenerated) by bin(TimeGenerated, 1h)"
    )


def rows_query(table: str, start, end, columns: Sequence[str], where: str | None = None) -> str:
    lines = [ident(table), f"| where {window(start, end)}"]
    if where:
        lines.append(f"| where {where}")
    lines.append("| project " + ", ".join(ident(c) for c in columns))
    return "\n".join(lines)
