"""Reading the tables from Azure Data Explorer (azure-kusto-data) against a real KQL engine on
loopback: duckdb-kql's Kusto REST server, serving a DuckDB file with the same rows as a folder.

duckdb-kql answers datetimes at microsecond precision, so these rows are at microseconds; the
100 ns path of the shared code is covered by test_loganalytics.py and, for the ADX wire, by a
stub answer below."""

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pandas as pd
import pytest
import requests

from include.detection import correlation, sources
from include.detection.errors import SourceError, UsageError
from include.detection.remote import from_url
from include.detection.remote.adx import AdxSource, parse_url
from tests.detection.test_loganalytics import assert_same_scan, write_folder
from tests.factories import RULE
from tests.fakes.loganalytics import WINDOW, load_table, sample_tables
from tests.oracle import as_counter, normalize_ours

START, END = (pd.Timestamp(t) for t in WINDOW)
TABLES = sorted(RULE.inputs)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def kusto_env(monkeypatch):
    for key in ("TOKEN", "SLICE", "MIN_SLICE", "ATTEMPTS", "BACKOFF", "MAX_WAIT", "TIMEOUT"):
        monkeypatch.delenv(f"DETECTION_KUSTO_{key}", raising=False)


def database_file(path: Path, tables: dict, types: dict | None = None) -> Path:
    con = duckdb.connect(str(path))
    for table, rows in tables.items():
        declared = dict((types or {}).get(table) or RULE.inputs[table])
        load_table(con, table, rows, declared)
    con.close()
    return path


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """The same rows as a JSONL folder and as a DuckDB file (database `lake`)."""
    base = tmp_path_factory.mktemp("adx")
    tables = sample_tables("us")
    write_folder(base / "folder", tables)
    return SimpleNamespace(folder=base / "folder", db=database_file(base / "lake.duckdb", tables))


def _serve(path: Path):
    from duckdb_kql.server import build_server

    server = build_server(str(path), port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture(scope="module")
def cluster(lake):
    """`duckdb-kql serve lake.duckdb` in this process (the server the CLI runs), on 127.0.0.1."""
    server, thread = _serve(lake.db)
    yield SimpleNamespace(
        url=server.url,
        database=server.database,
        source_url=f"kusto://{server.url.split('://')[1]}/{server.database}",
    )
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


class Recording(AdxSource):
    """Keeps every query sent."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sent = []

    def execute(self, database, query):
        self.sent.append(query)
        return super().execute(database, query)


class Interposed:
    """A KustoClient whose `interpose(query, send)` may raise what the service would, instead of
    sending the query (`send()` sends it to the real cluster)."""

    def __init__(self, client, interpose):
        self.client, self.interpose = client, interpose

    def execute_query(self, database, query, properties=None):
        return self.interpose(query, lambda: self.client.execute_query(database, query, properties))


def adx(cluster, waits=None, interpose=None, **settings) -> Recording:
    """A source on the served lake; one-day slices unless told (duckdb-kql translates each
    query in Python: ~0.1 s a query)."""
    settings.setdefault("slice", "1d")
    host, database = parse_url(cluster.source_url)
    remote = Recording(
        host, database, sleep=(waits.append if waits is not None else _no_sleep), **settings
    )
    if interpose is not None:
        remote._client = Interposed(remote.client, interpose)
    return remote


def _no_sleep(seconds):
    raise AssertionError(f"unexpected wait of {seconds} s")


@pytest.mark.parametrize("table", TABLES, ids=TABLES)
def test_an_unfiltered_scan_equals_the_folder_source(lake, cluster, table):
    remote = adx(cluster).scan(table, START, END, RULE.inputs[table], prefilter=False)
    local = sources.read_table(lake.folder, table, START, END, RULE.inputs[table], prefilter=False)
    assert_same_scan(remote, local, table)
    assert remote.format == "kusto" and remote.source == cluster.source_url


@pytest.mark.parametrize("table", TABLES, ids=TABLES)
def test_a_prefiltered_scan_holds_the_folder_rows_that_pass_the_rules_first_where(
    lake, cluster, table
):
    remote = adx(cluster).scan(table, START, END, RULE.inputs[table])
    local = sources.read_table(lake.folder, table, START, END, RULE.inputs[table])
    first_step = {
        "AzureActivity": correlation.where_operation_is_run_command,
        "BehaviorAnalytics": correlation.where_azure_ad_uncommon_action,
    }[table]
    expected = first_step(local.frame).reset_index(drop=True)
    assert 0 < len(expected) < local.rows_in_window
    assert_same_scan(remote, local, table, expected)


def test_the_rule_over_the_cluster_returns_what_it_returns_over_the_folder(lake, cluster):
    remote = adx(cluster)
    ours = correlation.correlate(
        *(
            remote.scan(t, START, END, RULE.inputs[t]).frame
            for t in ("AzureActivity", "BehaviorAnalytics")
        )
    )
    theirs = correlation.correlate(
        *(
            sources.read_table(lake.folder, t, START, END, RULE.inputs[t]).frame
            for t in ("AzureActivity", "BehaviorAnalytics")
        )
    )
    assert len(ours) >= 3
    assert as_counter(normalize_ours(ours)) == as_counter(normalize_ours(theirs))


def test_every_query_filters_the_window_and_row_queries_project_only_the_rules_columns(cluster):
    remote = adx(cluster, slice="12h")
    for table in TABLES:
        remote.scan(table, START, END, RULE.inputs[table])
    window = re.compile(
        r"^(\w+)\n\| where TimeGenerated >= datetime\(([^)]+)\) and "
        r"TimeGenerated < datetime\(([^)]+)\)\n"
    )
    for query in remote.sent:
        match = window.match(query)
        assert match, query
        assert START <= pd.Timestamp(match.group(2)) < pd.Timestamp(match.group(3)) <= END
        if "| project" in query:
            assert query.splitlines()[-1] == "| project " + ", ".join(RULE.inputs[match.group(1)])
    assert len(remote.sent) == 2 * (1 + 4 + 4)  # per table: schema, 4 profile and 4 row slices


TOO_LARGE = {
    "OneApiErrors": [
        {
            "error": {
                "code": "LimitsExceeded",
                "message": "Request is invalid and cannot be executed.",
                "@type": (
                    "Kusto.Data.Exceptions.KustoServicePartialQueryFailureLimitsExceededException"
                ),
                "@message": (
                    "Query execution has exceeded the allowed limits (80DA0003): The results of "
                    "this query exceed the set limit of 500000 records, so not all records were "
                    "returned (E_QUERY_RESULT_SET_TOO_LARGE, 0x80DA0003)."
                ),
                "@permanent": False,
            }
        }
    ]
}


def _span(query: str) -> pd.Timedelta:
    lo, hi = re.findall(r"datetime\(([^)]+)\)", query)[:2]
    return pd.Timestamp(hi) - pd.Timestamp(lo)


def test_a_result_too_large_for_one_answer_is_split_until_it_fits(lake, cluster):
    """The cluster refuses (as ADX does, inside a 200) any row query wider than 3 hours."""
    from azure.kusto.data.exceptions import KustoMultiApiError

    def cap(query, send):
        if "| project" in query and _span(query) > pd.Timedelta(hours=3):
            raise KustoMultiApiError([TOO_LARGE])
        return send()

    remote = adx(cluster, interpose=cap, slice="6h")
    scan = remote.scan("AzureActivity", START, END, RULE.inputs["AzureActivity"])
    local = sources.read_table(
        lake.folder, "AzureActivity", START, END, RULE.inputs["AzureActivity"]
    )
    assert_same_scan(
        scan,
        local,
        "AzureActivity",
        correlation.where_operation_is_run_command(local.frame).reset_index(drop=True),
    )
    rows = [q for q in remote.sent if "| project" in q]
    assert len(rows) == 8 + 16  # 8 six-hour slices refused, each answered as two of 3 h


def test_a_partial_failure_of_another_kind_is_refused_not_split(cluster):
    from azure.kusto.data.exceptions import KustoMultiApiError

    other = {
        "OneApiErrors": [
            {
                "error": {
                    "code": "General_InternalServerError",
                    "message": "x",
                    "@message": "shard unavailable",
                }
            }
        ]
    }

    def fail(query, send):
        if "| project" in query:
            raise KustoMultiApiError([other])
        return send()

    remote = adx(cluster, interpose=fail)
    with pytest.raises(SourceError, match="shard unavailable"):
        remote.scan("AzureActivity", START, END, RULE.inputs["AzureActivity"])
    assert sum("| project" in q for q in remote.sent) == 1


def http_response(status: int, headers: dict | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code, response._content = status, b"{}"
    response.headers.update(headers or {})
    return response


def test_throttling_waits_for_the_retry_after_and_asks_again(cluster):
    from azure.kusto.data.exceptions import KustoThrottlingError

    throttled = []

    def once(query, send):
        if not throttled:
            throttled.append(query)
            raise KustoThrottlingError(
                "The request was throttled by the server.", http_response(429, {"Retry-After": "2"})
            )
        return send()

    waits = []
    remote = adx(cluster, waits=waits, interpose=once)
    remote.scan("AzureActivity", START, END, RULE.inputs["AzureActivity"])
    assert waits == [2.0] and remote.sent[0] == remote.sent[1] == throttled[0]


def test_server_errors_are_retried_and_a_persistent_one_names_database_table_and_slice(cluster):
    from azure.kusto.data.exceptions import KustoServiceError

    def down(query, send):
        raise KustoServiceError("Service unavailable", http_response(503))

    waits = []
    remote = adx(cluster, waits=waits, interpose=down, attempts=3)
    with pytest.raises(SourceError) as err:
        remote.scan("AzureActivity", START, END, RULE.inputs["AzureActivity"])
    message = str(err.value)
    assert len(remote.sent) == 3 and len(waits) == 2
    assert message.startswith("AzureActivity: database lake on http://127.0.0.1:")
    assert "schema query for [2026-10-30T00:00:00Z, 2026-11-01T00:00:00Z)" in message


@pytest.mark.parametrize("status", [401, 403], ids=["401", "403"])
def test_a_refusal_fails_at_once_naming_the_database_and_the_identity(cluster, status):
    from azure.kusto.data.exceptions import KustoServiceError

    def refuse(query, send):
        raise KustoServiceError(f"{status}. Missing adequate access rights.", http_response(status))

    remote = adx(cluster, interpose=refuse)
    with pytest.raises(SourceError) as err:
        remote.scan("AzureActivity", START, END, RULE.inputs["AzureActivity"])
    message = str(err.value)
    assert len(remote.sent) == 1
    assert "database lake" in message and "no authentication (loopback)" in message
    assert "Viewer" in message


def test_a_table_the_database_lacks_fails_naming_table_and_database(cluster):
    with pytest.raises(SourceError) as err:
        adx(cluster).scan("SigninLogs", START, END, {"TimeGenerated": "datetime"})
    assert str(err.value).startswith("SigninLogs: database lake") and "rejected" in str(err.value)


def test_a_column_the_table_lacks_is_reported_and_not_projected(tmp_path):
    columns = {c: k for c, k in RULE.inputs["AzureActivity"].items() if c != "CallerIpAddress"}
    db = database_file(
        tmp_path / "thin.duckdb",
        {"AzureActivity": sample_tables("us")["AzureActivity"]},
        {"AzureActivity": columns},
    )
    server, thread = _serve(db)
    try:
        remote = Recording(server.url, server.database, sleep=_no_sleep)
        scan = remote.scan("AzureActivity", START, END, RULE.inputs["AzureActivity"])
    finally:
        server.shutdown()
        server.server_close()
    assert scan.missing_columns == ["CallerIpAddress"] and list(scan.frame.columns) == list(columns)
    assert all("CallerIpAddress" not in q for q in remote.sent)


def test_seven_fractional_digits_and_dynamic_objects_from_the_adx_wire_are_kept():
    """duckdb-kql cannot send 100 ns; a real cluster does: the raw rows are parsed as text."""
    column = SimpleNamespace
    table = SimpleNamespace(
        columns=[
            column(column_name="TimeGenerated", column_type="datetime"),
            column(column_name="EventSource", column_type="string"),
            column(column_name="ActivityInsights", column_type="dynamic"),
        ],
        raw_rows=[["2026-10-31T10:00:00.1234567Z", "Azure AD", {"k": "Zürich", "n": [1, True]}]],
    )
    answer = SimpleNamespace(primary_results=[table])
    client = SimpleNamespace(execute_query=lambda database, query, properties: answer)
    remote = AdxSource("https://example.kusto.windows.net", "db", client=client, sleep=_no_sleep)
    frame = remote._frame(
        remote.execute("db", "q"),
        ["TimeGenerated", "EventSource", "ActivityInsights"],
        RULE.inputs["BehaviorAnalytics"],
        "db",
        "BehaviorAnalytics",
    )
    assert frame["TimeGenerated"].tolist() == [pd.Timestamp("2026-10-31T10:00:00.1234567Z")]
    assert frame["ActivityInsights"].tolist() == ['{"k":"Zürich","n":[1,true]}']


@pytest.mark.parametrize(
    "url, cluster_url, database",
    [
        ("kusto://127.0.0.1:31415/lake", "http://127.0.0.1:31415", "lake"),
        ("kusto://localhost:8080/Security", "http://localhost:8080", "Security"),
        (
            "kusto://help.westeurope.kusto.windows.net/Samples",
            "https://help.westeurope.kusto.windows.net",
            "Samples",
        ),
        (
            "kusto://ade.loganalytics.io/subscriptions/s/resourcegroups/rg/providers/"
            "microsoft.operationalinsights/workspaces/ws/ws",
            "https://ade.loganalytics.io/subscriptions/s/resourcegroups/rg/providers/"
            "microsoft.operationalinsights/workspaces/ws",
            "ws",
        ),
    ],
    ids=[
        "loopback is plain http",
        "localhost is plain http",
        "a cluster is https",
        "the ADX proxy of a workspace",
    ],
)
def test_a_url_names_the_cluster_and_the_database(url, cluster_url, database):
    assert parse_url(url) == (cluster_url, database)
    source = from_url(url)
    assert isinstance(source, AdxSource) and source.cluster == cluster_url
    assert source.targets == [database] and source.url == url


@pytest.mark.parametrize(
    "url",
    [
        "kusto://cluster.kusto.windows.net",
        "kusto:///db",
        "kusto://user:secret@cluster/db",
        "kusto://cluster/db?x=1",
        "kusto://cluster/bad|name",
    ],
    ids=[
        "no database",
        "no host",
        "credentials in the URL",
        "options",
        "a database name that is not one",
    ],
)
def test_a_bad_url_is_a_usage_error(url):
    with pytest.raises(UsageError):
        from_url(url)


def test_the_duckdb_kql_serve_command_answers_the_same_rows(lake, tmp_path):
    """The CLI itself (`duckdb-kql serve FILE -p 0`) as the cluster, in its own process group."""
    copy = tmp_path / "served.duckdb"
    copy.write_bytes(lake.db.read_bytes())  # the module's server holds the other file
    cli = Path(sys.executable).with_name("duckdb-kql")
    proc = subprocess.Popen(
        [str(cli), "serve", str(copy), "-p", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        url = None
        for line in proc.stdout:
            found = re.search(r"http://127\.0\.0\.1:\d+", line)
            if found:
                url = found.group()
                break
        assert url, "duckdb-kql serve printed no URL"
        remote = from_url(f"kusto://{url.split('://')[1]}/served", sleep=_no_sleep)
        scan = remote.scan(
            "BehaviorAnalytics", START, END, RULE.inputs["BehaviorAnalytics"], prefilter=False
        )
        local = sources.read_table(
            lake.folder,
            "BehaviorAnalytics",
            START,
            END,
            RULE.inputs["BehaviorAnalytics"],
            prefilter=False,
        )
        assert_same_scan(scan, local, "BehaviorAnalytics")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        proc.stdout.close()
