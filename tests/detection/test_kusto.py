"""KQL text: every literal, name and time that enters a remote query, checked against a KQL
engine (duckdb-kql), and the pushed-down `where` held equal to the rule's own KQL."""

import re

import duckdb_kql
import pandas as pd
import pytest

from include.detection import kusto
from include.detection.correlation import PUSHDOWN
from include.detection.errors import UsageError
from tests.factories import RULE

VALUES = {
    "plain": "Azure AD",
    "double quote": 'say "hi"',
    "single quote": "it's",
    "backslash": "C:\\Windows\\System32",
    "trailing backslash": "ends with \\",
    "backslash before quote": '\\"',
    "escaped-looking text": "\\n is not a newline, \\u0041 not an A",
    "newline": "line1\nline2",
    "carriage return": "a\r\nb",
    "tab": "a\tb",
    "NUL": "a\x00b",
    "control characters": "\x01\x07\x08\x0b\x0c\x1b\x1f\x7f",
    "non-ASCII": "Zürich, 東京, zoë",
    "emoji (beyond the BMP)": "run \U0001f680",
    "line and paragraph separators": "a\u2028b\u2029c",
    "dollar signs": "$$ $table $1",
    "semicolon": "x; .drop table AzureActivity",
    "comment": "x // the rest is not a comment",
    "pipe": 'x" | take 0 | print y="',
    "empty": "",
}


@pytest.fixture(scope="module")
def kql():
    con = duckdb_kql.connect()
    con.sql("CREATE TABLE T (s VARCHAR)")
    return con


@pytest.mark.parametrize("value", VALUES.values(), ids=VALUES.keys())
def test_a_literal_reads_back_as_the_same_value_in_a_kql_engine(kql, value):
    assert duckdb_kql.kql(kql, f"print x = {kusto.literal(value)}").fetchall() == [(value,)]


@pytest.mark.parametrize("value", VALUES.values(), ids=VALUES.keys())
def test_a_literal_in_a_where_matches_only_the_row_holding_that_value(kql, value):
    kql.execute("DELETE FROM T")
    kql.executemany("INSERT INTO T VALUES (?)", [[value], [value + "x"], ["other"]])
    rows = duckdb_kql.kql(kql, f"T | where s == {kusto.literal(value)} | project s").fetchall()
    assert rows == [(value,)]


@pytest.mark.parametrize("value", VALUES.values(), ids=VALUES.keys())
def test_a_literal_holds_no_raw_line_break_which_ends_a_kql_string(value):
    # Kusto's lexer (Kusto.Language LexicalGrammar): a quoted literal may not hold CR or LF.
    assert not set(kusto.literal(value)) & {"\r", "\n"}


def test_a_lone_surrogate_cannot_become_a_literal():
    with pytest.raises(UsageError, match="surrogate"):
        kusto.literal("a\ud800b")


def test_only_strings_become_literals():
    with pytest.raises(TypeError):
        kusto.literal(5)


@pytest.mark.parametrize("name", ["AzureActivity", "TimeGenerated", "_private", "Col_2"])
def test_allowed_names_are_written_as_they_are(name):
    assert kusto.ident(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "2col",
        "Col Name",
        "Col;drop",
        "Col|take",
        "Col'",
        'Col"',
        "Col\n",
        "Authorization.scope",
        "['x']",
        "Zürich",
        None,
    ],
    ids=[
        "empty",
        "leading digit",
        "space",
        "semicolon",
        "pipe",
        "single quote",
        "double quote",
        "newline",
        "dot",
        "bracketed",
        "non-ASCII",
        "None",
    ],
)
def test_names_outside_the_allow_list_are_refused(name):
    with pytest.raises(UsageError, match="not an allowed KQL name"):
        kusto.ident(name)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("4c1b9f52-33aa-4d0e-8f6b-0a1b2c3d4e5f", "4c1b9f52-33aa-4d0e-8f6b-0a1b2c3d4e5f"),
        ("4C1B9F52-33AA-4D0E-8F6B-0A1B2C3D4E5F", "4c1b9f52-33aa-4d0e-8f6b-0a1b2c3d4e5f"),
        (
            "/subscriptions/4c1b9f52-33aa-4d0e-8f6b-0a1b2c3d4e5f/resourceGroups/rg-sec.01/providers/"
            "Microsoft.OperationalInsights/workspaces/sentinel-ws",
            "/subscriptions/4c1b9f52-33aa-4d0e-8f6b-0a1b2c3d4e5f/resourceGroups/rg-sec.01/providers/"
            "Microsoft.OperationalInsights/workspaces/sentinel-ws",
        ),
    ],
    ids=["guid", "upper-case guid is lower-cased", "resource id"],
)
def test_workspace_ids_are_guids_or_resource_ids(value, expected):
    assert kusto.workspace_id(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "sentinel-ws",
        "4c1b9f52-33aa-4d0e-8f6b-0a1b2c3d4e5",
        "4c1b9f52-33aa-4d0e-8f6b-0a1b2c3d4e5f;x",
        "/subscriptions/x/resourceGroups/rg/providers/Microsoft.OperationalInsights/workspaces/ws",
        "/subscriptions/4c1b9f52-33aa-4d0e-8f6b-0a1b2c3d4e5f/resourceGroups/rg/providers/"
        "Microsoft.Compute/virtualMachines/vm",
        "/subscriptions/4c1b9f52-33aa-4d0e-8f6b-0a1b2c3d4e5f/resourceGroups/rg/providers/"
        "Microsoft.OperationalInsights/workspaces/ws/../../x",
    ],
    ids=[
        "a name",
        "short guid",
        "guid with a tail",
        "subscription not a guid",
        "not a workspace",
        "path traversal",
    ],
)
def test_anything_else_is_not_a_workspace(value):
    with pytest.raises(UsageError, match="not a Log Analytics workspace"):
        kusto.workspace_id(value)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2026-11-01", "datetime(2026-11-01T00:00:00.0000000Z)"),
        ("2026-11-01T10:00:00.1234567Z", "datetime(2026-11-01T10:00:00.1234567Z)"),
        ("2026-11-01T11:00:00.1234567+01:00", "datetime(2026-11-01T10:00:00.1234567Z)"),
        ("2026-11-01T10:00:00.12345601Z", "datetime(2026-11-01T10:00:00.1234561Z)"),
    ],
    ids=[
        "naive means UTC",
        "7 fractional digits",
        "offset converted to UTC",
        "finer than 100 ns rounds up to the next tick",
    ],
)
def test_datetimes_are_utc_with_seven_fractional_digits(value, expected):
    assert kusto.datetime(value) == expected


def test_a_datetime_literal_reads_back_in_a_kql_engine(kql):
    text = kusto.datetime("2026-11-01T10:00:00.123456Z")
    ((value,),) = duckdb_kql.kql(kql, f"print t = {text}").fetchall()
    assert pd.Timestamp(value, tz="UTC") == pd.Timestamp("2026-11-01T10:00:00.123456Z")


def _first_where(table: str) -> str:
    """The first `| where` line after `table` in the rule's own query text."""
    query = RULE.query
    lines = query[query.index(table) :].splitlines()
    return next(
        line.strip()[len("| where ") :] for line in lines if line.strip().startswith("| where ")
    )


@pytest.mark.parametrize("table", sorted(PUSHDOWN), ids=sorted(PUSHDOWN))
def test_the_pushed_down_where_is_the_rules_first_where_of_that_side(table):
    assert kusto.pushdown(PUSHDOWN[table]) == _first_where(table)


def test_a_predicate_on_a_column_the_table_lacks_is_not_sent():
    types = {"EventSource": "string"}  # no ActivityInsights
    assert kusto.pushdown(PUSHDOWN["BehaviorAnalytics"], types) == 'EventSource == "Azure AD"'


def test_a_json_column_stored_as_a_string_is_parsed_before_its_property_is_read():
    where = kusto.pushdown(
        PUSHDOWN["BehaviorAnalytics"], {"EventSource": "string", "ActivityInsights": "string"}
    )
    assert where.endswith('parse_json(ActivityInsights).ActionUncommonlyPerformedByUser == "True"')


@pytest.mark.parametrize("table", sorted(RULE.inputs), ids=sorted(RULE.inputs))
def test_every_query_starts_with_the_window_and_the_row_query_projects_the_rule_columns(table):
    start, end = "2026-10-30T00:00:00Z", "2026-11-01T00:00:00Z"
    window = (
        "| where TimeGenerated >= datetime(2026-10-30T00:00:00.0000000Z) and "
        "TimeGenerated < datetime(2026-11-01T00:00:00.0000000Z)"
    )
    columns = list(RULE.inputs[table])
    queries = [
        kusto.schema_query(table, start, end),
        kusto.profile_query(table, start, end),
        kusto.rows_query(table, start, end, columns, kusto.pushdown(PUSHDOWN[table])),
    ]
    for query in queries:
        assert query.splitlines()[:2] == [table, window]
        assert duckdb_kql.parse(query).ok, query
    assert queries[2].splitlines()[-1] == "| project " + ", ".join(columns)


def test_the_row_query_finds_exactly_the_rows_the_rule_keeps_in_a_kql_engine(kql):
    """The rendered query, run by a KQL engine, keeps the window (half-open) and the rule's
    predicate: a JSON true, a nested pair and another source are all out."""
    kql.execute(
        "CREATE OR REPLACE TABLE BehaviorAnalytics (TimeGenerated TIMESTAMP_NS, "
        "EventSource VARCHAR, ActivityInsights JSON, Extra VARCHAR)"
    )
    flagged = '{"ActionUncommonlyPerformedByUser":"True"}'
    rows = [
        ("2026-10-30 00:00:00", "Azure AD", flagged),
        ("2026-10-31 23:59:59.999999", "Azure AD", flagged),
        ("2026-11-01 00:00:00", "Azure AD", flagged),
        ("2026-10-29 23:59:59.999999", "Azure AD", flagged),
        ("2026-10-31 10:00:00", "Azure AD", '{"ActionUncommonlyPerformedByUser":true}'),
        ("2026-10-31 10:00:00", "Azure AD", '{"x":' + flagged + "}"),
        ("2026-10-31 10:00:00", "azure ad", flagged),
    ]
    kql.executemany("INSERT INTO BehaviorAnalytics VALUES (?, ?, ?, 'x')", rows)
    query = kusto.rows_query(
        "BehaviorAnalytics",
        "2026-10-30T00:00:00Z",
        "2026-11-01T00:00:00Z",
        ["TimeGenerated", "EventSource"],
        kusto.pushdown(PUSHDOWN["BehaviorAnalytics"]),
    )
    result = duckdb_kql.kql(kql, query)
    assert result.columns == ["TimeGenerated", "EventSource"]
    times = sorted(str(t) for t, _ in result.fetchall())
    assert times == ["2026-10-30 00:00:00", "2026-10-31 23:59:59.999999"]


def test_the_window_literal_is_the_only_place_times_enter_the_query():
    query = kusto.profile_query("AzureActivity", "2026-10-30", "2026-11-01")
    assert re.findall(r"datetime\(([^)]*)\)", query) == [
        "2026-10-30T00:00:00.0000000Z",
        "2026-11-01T00:00:00.0000000Z",
    ]
