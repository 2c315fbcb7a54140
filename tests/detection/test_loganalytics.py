"""Reading the tables from a Log Analytics workspace (tests/fakes/loganalytics.py: the query API
on loopback, evaluating the KQL with duckdb-kql): the same rows as the folder source, whatever
the wire does (caps, throttling, errors), and only the window's candidate rows cross it."""

import base64
import json
import logging

import pandas as pd
import pytest

from include.detection import correlation, sources
from include.detection.connections import redact
from include.detection.errors import SourceError, UsageError
from include.detection.remote import from_url
from include.detection.remote.loganalytics import LogAnalyticsSource, StaticToken
from tests.factories import RULE, activity_row
from tests.fakes.loganalytics import TOKEN, WINDOW, WORKSPACE, FakeLogAnalytics, sample_tables
from tests.oracle import as_counter, normalize_ours

START, END = (pd.Timestamp(t) for t in WINDOW)
WS2 = "0b9e7d6c-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
TABLES = sorted(RULE.inputs)


@pytest.fixture(autouse=True)
def la_env(monkeypatch):
    monkeypatch.setenv("DETECTION_LOGANALYTICS_TOKEN", TOKEN)
    for key in (
        "ENDPOINT",
        "AUDIENCE",
        "SLICE",
        "MIN_SLICE",
        "ATTEMPTS",
        "BACKOFF",
        "MAX_WAIT",
        "TIMEOUT",
    ):
        monkeypatch.delenv(f"DETECTION_LOGANALYTICS_{key}", raising=False)


@pytest.fixture
def served():
    """start(tables=None, **fake options) -> a running fake; all stopped at the end."""
    fakes = []

    def start(workspaces=None, **options):
        fake = FakeLogAnalytics(workspaces or {WORKSPACE: sample_tables()}, **options).start()
        fakes.append(fake)
        return fake

    yield start
    for fake in fakes:
        fake.stop()


def source(fake, workspaces=(WORKSPACE,), waits=None, **settings) -> LogAnalyticsSource:
    return LogAnalyticsSource(
        list(workspaces),
        endpoint=fake.url,
        sleep=(waits.append if waits is not None else _no_sleep),
        **settings,
    )


def _no_sleep(seconds):
    raise AssertionError(f"unexpected wait of {seconds} s")


def write_folder(folder, tables) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for table, rows in tables.items():
        (folder / f"{table}.jsonl").write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
        )


def comparable(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """Dynamic columns compared as JSON values (Kusto re-serialises them compactly), rows in a
    fixed order (a service answers in any order)."""
    out = frame.copy()
    for column, kind in RULE.inputs[table].items():
        if kind == "dynamic" and column in out:
            out[column] = (
                out[column]
                .map(
                    lambda v: v if pd.isna(v) else json.dumps(json.loads(v), sort_keys=True),
                    na_action="ignore",
                )
                .astype("str")
            )
    return out.sort_values(list(out.columns), ignore_index=True)


def assert_same_scan(remote: sources.Scan, local: sources.Scan, table: str, expected=None):
    expected = local.frame if expected is None else expected
    assert list(remote.frame.columns) == list(expected.columns)
    assert list(remote.frame.dtypes) == list(expected.dtypes)
    pd.testing.assert_frame_equal(comparable(remote.frame, table), comparable(expected, table))
    assert remote.rows_in_window == local.rows_in_window
    assert remote.hourly == local.hourly
    assert remote.newest == local.newest
    assert remote.missing_columns == local.missing_columns == []
    assert remote.quarantine == []


WIRE = {
    "answers in full": {},
    "capped at 3 rows an answer, first request throttled": {"cap": 3, "throttle": True},
}


def start_wire(served, wire):
    fake = served(cap=wire.get("cap"))
    if wire.get("throttle"):
        fake.throttle_first(seconds=1)
    return fake


@pytest.mark.parametrize("wire", WIRE.values(), ids=WIRE.keys())
@pytest.mark.parametrize("table", TABLES, ids=TABLES)
def test_an_unfiltered_scan_equals_the_folder_source(tmp_path, served, wire, table):
    write_folder(tmp_path, sample_tables())
    fake, waits = start_wire(served, wire), []
    remote = source(fake, waits=waits).scan(table, START, END, RULE.inputs[table], prefilter=False)
    local = sources.read_table(tmp_path, table, START, END, RULE.inputs[table], prefilter=False)
    assert_same_scan(remote, local, table)
    assert len(remote.frame) == remote.rows_in_window
    assert waits == ([1.0] if wire.get("throttle") else [])


@pytest.mark.parametrize("wire", WIRE.values(), ids=WIRE.keys())
@pytest.mark.parametrize("table", TABLES, ids=TABLES)
def test_a_prefiltered_scan_holds_the_folder_rows_that_pass_the_rules_first_where(
    tmp_path, served, wire, table
):
    """Kusto evaluates the rule's predicate exactly, where the folder scan keeps a superset
    (correlation.PUSHDOWN): equal once the rule's own first step has run on the folder rows."""
    write_folder(tmp_path, sample_tables())
    fake = start_wire(served, wire)
    remote = source(fake, waits=[]).scan(table, START, END, RULE.inputs[table])
    local = sources.read_table(tmp_path, table, START, END, RULE.inputs[table])
    first_step = {
        "AzureActivity": correlation.where_operation_is_run_command,
        "BehaviorAnalytics": correlation.where_azure_ad_uncommon_action,
    }[table]
    expected = first_step(local.frame).reset_index(drop=True)
    assert 0 < len(expected) < local.rows_in_window
    assert_same_scan(remote, local, table, expected)


@pytest.mark.parametrize("wire", WIRE.values(), ids=WIRE.keys())
def test_the_rule_over_the_workspace_returns_what_it_returns_over_the_folder(
    tmp_path, served, wire
):
    write_folder(tmp_path, sample_tables())
    fake = start_wire(served, wire)
    remote = source(fake, waits=[])
    scans = {t: remote.scan(t, START, END, RULE.inputs[t]) for t in TABLES}
    local = {t: sources.read_table(tmp_path, t, START, END, RULE.inputs[t]) for t in TABLES}
    ours = normalize_ours(
        correlation.correlate(scans["AzureActivity"].frame, scans["BehaviorAnalytics"].frame)
    )
    theirs = normalize_ours(
        correlation.correlate(local["AzureActivity"].frame, local["BehaviorAnalytics"].frame)
    )
    assert len(ours) >= 3, "the sample must produce results, or equality proves nothing"
    assert as_counter(ours) == as_counter(theirs)


def test_every_query_filters_the_window_and_row_queries_project_only_the_rules_columns(served):
    fake = served(cap=3)  # small answers: slices are split, and every split query is checked
    remote = source(fake)
    for table in TABLES:
        remote.scan(table, START, END, RULE.inputs[table])
    assert any(q["truncated"] for q in fake.queries), "the cap must have forced splits"
    for query in fake.queries:
        assert query["window"] is not None, query["query"]
        lo, hi = (pd.Timestamp(t) for t in query["window"])
        assert START <= lo < hi <= END, query["query"]
        if query["kind"] == "rows":
            project = query["query"].splitlines()[-1]
            assert project == "| project " + ", ".join(RULE.inputs[query["table"]])
    assert {q["kind"] for q in fake.queries} == {"schema", "profile", "rows"}


def test_only_the_rows_passing_the_first_where_and_the_hourly_summary_cross_the_wire(served):
    fake = served()
    remote = source(fake)
    scans = {t: remote.scan(t, START, END, RULE.inputs[t]) for t in TABLES}
    for table in TABLES:
        pulled = sum(q["rows"] for q in fake.sent("rows", table))
        assert pulled == len(scans[table].frame) < scans[table].rows_in_window
        assert sum(q["rows"] for q in fake.sent("profile", table)) == len(scans[table].hourly)
        assert all(q["rows"] == 0 for q in fake.sent("schema", table))


def test_the_seventh_fractional_digit_survives_where_the_sdks_own_rows_drop_it(served):
    fake = served()
    scan = source(fake).scan("AzureActivity", START, END, RULE.inputs["AzureActivity"])
    assert pd.Timestamp("2026-10-31T10:00:00.1234567Z") in set(scan.frame["TimeGenerated"])
    assert scan.newest == "2026-10-31T23:59:59.999999900+00:00"
    # Why the rows are read from the JSON body: the SDK's converted rows lose the last digit.
    from azure.monitor.query import LogsQueryClient

    client = LogsQueryClient(StaticToken(TOKEN), endpoint=fake.url, retry_total=0)
    result = client.query_workspace(
        WORKSPACE,
        "AzureActivity | where TimeGenerated >= datetime(2026-10-31T10:00:00Z) and "
        "TimeGenerated < datetime(2026-10-31T10:00:01Z) | project TimeGenerated",
        timespan=None,
        enforce_https=False,
    )
    assert result.tables[0].rows[0][0].microsecond == 123456  # .1234567 truncated


def test_a_null_guid_stays_null_where_the_sdk_would_write_none(served):
    rows = [activity_row(CorrelationId=None, TimeGenerated="2026-10-31T10:00:00Z")]
    types = {"AzureActivity": {**RULE.inputs["AzureActivity"], "CorrelationId": "guid"}}
    fake = served({WORKSPACE: {"AzureActivity": rows}}, types=types)
    scan = source(fake).scan("AzureActivity", START, END, RULE.inputs["AzureActivity"])
    assert scan.frame["CorrelationId"].isna().tolist() == [True]
    assert scan.source_types["CorrelationId"] == "string"
    from azure.monitor.query import LogsQueryClient

    client = LogsQueryClient(StaticToken(TOKEN), endpoint=fake.url, retry_total=0)
    result = client.query_workspace(
        WORKSPACE,
        "AzureActivity | where TimeGenerated >= datetime(2026-10-31T00:00:00Z) and "
        "TimeGenerated < datetime(2026-11-01T00:00:00Z) | project CorrelationId",
        timespan=None,
        enforce_https=False,
    )
    assert result.tables[0].rows[0][0] == "None"  # the SDK's conversion of a null guid


def test_429_waits_for_the_retry_after_the_service_names(served):
    fake, waits = served(), []
    fake.throttle_first(seconds=1)
    source(fake, waits=waits).scan("AzureActivity", START, END, RULE.inputs["AzureActivity"])
    assert waits == [1.0]
    first, second = fake.requests[0].json, fake.requests[1].json
    assert first["query"] == second["query"], "the throttled query is asked again"


def test_429_without_retry_after_backs_off_and_retries(served):
    fake, waits = served(), []
    fake.fail(times=2, status=429, body='{"error": {"code": "Throttled", "message": "busy"}}')
    source(fake, waits=waits, backoff=0.5).scan(
        "BehaviorAnalytics", START, END, RULE.inputs["BehaviorAnalytics"]
    )
    assert len(waits) == 2 and all(w > 0 for w in waits)


def test_a_retry_after_beyond_the_longest_wait_fails_rather_than_stalls(served):
    fake = served()
    fake.throttle_first(seconds=600)
    with pytest.raises(SourceError) as err:
        source(fake, max_wait=30).scan("AzureActivity", START, END, RULE.inputs["AzureActivity"])
    message = str(err.value)
    assert WORKSPACE in message and "600 s" in message and "MAX_WAIT" in message
    assert len(fake.requests) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504], ids=lambda s: f"HTTP {s}")
def test_server_errors_are_retried_with_backoff(served, status):
    fake, waits = served(), []
    fake.fail(times=2, status=status, body='{"error": {"code": "ServerError", "message": "x"}}')
    scan = source(fake, waits=waits).scan("AzureActivity", START, END, RULE.inputs["AzureActivity"])
    assert len(waits) == 2 and len(scan.frame) > 0


def test_a_server_that_keeps_failing_fails_naming_workspace_table_and_slice(served):
    fake = served()
    fake.down(status=503, body='{"error": {"code": "ServiceUnavailable", "message": "down"}}')
    with pytest.raises(SourceError) as err:
        source(fake, waits=[], attempts=3).scan(
            "AzureActivity", START, END, RULE.inputs["AzureActivity"]
        )
    message = str(err.value)
    assert message.startswith("AzureActivity: ") and WORKSPACE in message
    assert "[2026-10-30T00:00:00Z, 2026-11-01T00:00:00Z)" in message and "3 attempt" in message
    assert len(fake.requests) == 3


JWT = ".".join(
    base64.urlsafe_b64encode(p).decode().rstrip("=")
    for p in (b'{"alg":"none"}', b'{"upn":"reader@contoso.com","oid":"1234"}', b"signature-9f8e7d")
)


@pytest.mark.parametrize(
    "status, code",
    [(401, "AuthenticationFailed"), (403, "InsufficientAccessError")],
    ids=["401 unauthenticated", "403 not allowed"],
)
def test_a_refusal_fails_at_once_naming_workspace_and_identity_never_the_token(
    served, monkeypatch, caplog, status, code
):
    monkeypatch.setenv("DETECTION_LOGANALYTICS_TOKEN", JWT)
    fake = served(token=None)
    fake.down(status=status, body=json.dumps({"error": {"code": code, "message": "no access"}}))
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceError) as err:
        source(fake).scan("AzureActivity", START, END, RULE.inputs["AzureActivity"])
    message = str(err.value)
    assert len(fake.requests) == 1, "a refusal is not retried"
    assert WORKSPACE in message and f"HTTP {status}" in message and code in message
    assert "upn=reader@contoso.com" in message and "DETECTION_LOGANALYTICS_TOKEN" in message
    assert "Log Analytics Reader" in message
    assert JWT not in message and JWT not in caplog.text
    assert fake.requests[0].headers["authorization"] == f"Bearer {JWT}"


def test_a_wrong_token_is_refused_by_the_service_and_reported_without_it(served, monkeypatch):
    monkeypatch.setenv("DETECTION_LOGANALYTICS_TOKEN", "wrong-token-31d9a")
    fake = served()
    with pytest.raises(SourceError) as err:
        source(fake).scan("AzureActivity", START, END, RULE.inputs["AzureActivity"])
    assert "AuthenticationFailed" in str(err.value) and "wrong-token-31d9a" not in str(err.value)
    assert redact("Bearer wrong-token-31d9a") == "Bearer ***"


def test_a_credential_passed_in_wins_over_the_environment(served, monkeypatch):
    monkeypatch.setenv("DETECTION_LOGANALYTICS_TOKEN", "wrong-token-31d9a")
    fake = served()
    remote = LogAnalyticsSource(
        [WORKSPACE], credential=StaticToken(TOKEN, "connection"), endpoint=fake.url, sleep=_no_sleep
    )
    assert len(remote.scan("AzureActivity", START, END, RULE.inputs["AzureActivity"]).frame)


def test_204_from_a_workspace_without_data_is_no_rows(served):
    fake = served()
    fake.down(status=204, body="")
    scan = source(fake).scan("BehaviorAnalytics", START, END, RULE.inputs["BehaviorAnalytics"])
    assert scan.frame.empty and scan.rows_in_window == 0 and scan.hourly == {}
    assert scan.newest is None and scan.missing_columns == []
    assert list(scan.frame.columns) == list(RULE.inputs["BehaviorAnalytics"])
    assert str(scan.frame["TimeGenerated"].dtype) == "datetime64[ns, UTC]"
    assert fake.count() == 1, "nothing more is asked of a workspace without data"


def test_rows_sharing_one_timestamp_beyond_the_cap_fail_clearly_instead_of_looping(served):
    same = "2026-10-31T10:00:00.5000000Z"
    rows = [activity_row(CorrelationId=f"c{i}", TimeGenerated=same) for i in range(5)]
    fake = served({WORKSPACE: {"AzureActivity": rows}}, cap=3)
    with pytest.raises(SourceError) as err:
        source(fake).scan("AzureActivity", START, END, RULE.inputs["AzureActivity"])
    message = str(err.value)
    assert WORKSPACE in message and message.startswith("AzureActivity: ")
    assert "E_QUERY_RESULT_SET_TOO_LARGE" in message and "MIN_SLICE" in message
    assert "2026-10-31T10:00:00" in message  # the slice it could not split further
    assert len(fake.queries) < 60


def test_a_partial_answer_for_another_reason_is_refused_not_split(served):
    fake = served()
    partial = {
        "tables": [{"name": "PrimaryResult", "columns": [], "rows": []}],
        "error": {
            "code": "PartialError",
            "message": "Response contained partial errors",
            "details": [{"code": "WorkspaceUnavailable", "message": "one cluster did not answer"}],
        },
    }
    fake.fail(times=1, status=200, body=json.dumps(partial))
    with pytest.raises(SourceError, match="partial answer.*did not answer"):
        source(fake).scan("AzureActivity", START, END, RULE.inputs["AzureActivity"])
    assert len(fake.requests) == 1


def test_a_table_the_workspace_lacks_fails_naming_table_and_workspace(served):
    fake = served()
    with pytest.raises(SourceError) as err:
        source(fake).scan("SigninLogs", START, END, {"TimeGenerated": "datetime"})
    assert str(err.value).startswith("SigninLogs: ") and WORKSPACE in str(err.value)


def test_a_column_the_table_lacks_is_reported_and_not_projected(served):
    columns = {c: k for c, k in RULE.inputs["AzureActivity"].items() if c != "CallerIpAddress"}
    rows = [
        {k: v for k, v in r.items() if k != "CallerIpAddress"}
        for r in sample_tables()["AzureActivity"]
    ]
    fake = served({WORKSPACE: {"AzureActivity": rows}}, types={"AzureActivity": columns})
    scan = source(fake).scan("AzureActivity", START, END, RULE.inputs["AzureActivity"])
    assert scan.missing_columns == ["CallerIpAddress"]
    assert list(scan.frame.columns) == list(columns)
    assert all("CallerIpAddress" not in q["query"] for q in fake.queries)


def test_two_workspaces_are_read_one_by_one_and_the_failing_one_is_named(served):
    tables = sample_tables()
    fake = served({WORKSPACE: tables, WS2: tables})
    both = source(fake, workspaces=(WORKSPACE, WS2))
    one = both.only(WORKSPACE).scan("AzureActivity", START, END, RULE.inputs["AzureActivity"])
    two = both.scan("AzureActivity", START, END, RULE.inputs["AzureActivity"])
    assert len(two.frame) == 2 * len(one.frame) and two.rows_in_window == 2 * one.rows_in_window
    assert {q["workspace"] for q in fake.queries} == {WORKSPACE, WS2}
    fake.fail(
        times=10**6,
        status=401,
        path=WS2,
        body='{"error": {"code": "AuthenticationFailed", "message": "not in this tenant"}}',
    )
    with pytest.raises(SourceError, match=WS2):
        both.scan("AzureActivity", START, END, RULE.inputs["AzureActivity"])


def test_a_workspace_resource_id_is_queried_on_its_resource_path(served):
    resource = (
        "/subscriptions/4c1b9f52-33aa-4d0e-8f6b-0a1b2c3d4e5f/resourceGroups/rg-sec/"
        "providers/Microsoft.OperationalInsights/workspaces/sentinel-ws"
    )
    fake = served({resource: sample_tables()})
    scan = source(fake, workspaces=(resource,)).scan(
        "AzureActivity", START, END, RULE.inputs["AzureActivity"]
    )
    assert len(scan.frame) > 0
    assert fake.requests[0].path == f"/v1{resource}/query"


def test_one_log_line_per_query_with_workspace_table_slice_rows_bytes_and_seconds(served, caplog):
    fake = served()
    with caplog.at_level(logging.INFO, logger="include.detection.remote"):
        source(fake).scan("AzureActivity", START, END, RULE.inputs["AzureActivity"])
    lines = [r.getMessage() for r in caplog.records if r.name == "include.detection.remote"]
    assert len(lines) == len(fake.queries)
    assert all(
        WORKSPACE in line
        and "AzureActivity" in line
        and " rows, " in line
        and " bytes, " in line
        and line.endswith(" s")
        for line in lines
    )
    assert TOKEN not in caplog.text


@pytest.mark.parametrize(
    "endpoint",
    ["http://example.com", "http://10.0.0.5:8080", "ftp://x"],
    ids=["http to a public host", "http to a private address", "not http"],
)
def test_plain_http_is_refused_except_to_a_loopback_host(endpoint):
    with pytest.raises(UsageError, match="DETECTION_LOGANALYTICS_ENDPOINT"):
        LogAnalyticsSource([WORKSPACE], endpoint=endpoint)


@pytest.mark.parametrize(
    "endpoint, kept",
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost:9/", "http://localhost:9"),
        ("https://api.loganalytics.azure.cn/v1", "https://api.loganalytics.azure.cn"),
    ],
    ids=["loopback address", "localhost", "https with its API version stripped"],
)
def test_https_and_loopback_endpoints_are_accepted(endpoint, kept):
    assert LogAnalyticsSource([WORKSPACE], endpoint=endpoint).endpoint == kept


def test_the_endpoint_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("DETECTION_LOGANALYTICS_ENDPOINT", "http://127.0.0.1:18090")
    assert from_url(f"loganalytics://{WORKSPACE}").endpoint == "http://127.0.0.1:18090"


def test_a_url_names_one_or_more_workspaces(monkeypatch):
    remote = from_url(f"loganalytics://{WORKSPACE.upper()},{WS2}")
    assert isinstance(remote, LogAnalyticsSource) and remote.targets == [WORKSPACE, WS2]
    assert remote.url == f"loganalytics://{WORKSPACE},{WS2}"


@pytest.mark.parametrize(
    "url",
    [
        "loganalytics://",
        "loganalytics://my-workspace",
        f"loganalytics://{WORKSPACE},bad",
        "kusto:/x",
    ],
    ids=["no workspace", "a name not an id", "one bad id", "not a url"],
)
def test_a_bad_url_is_a_usage_error(url):
    with pytest.raises(UsageError):
        from_url(url)


def test_the_static_token_is_masked_wherever_the_library_writes(served):
    StaticToken("tok-8a7b6c5d4e")
    assert redact("Authorization: Bearer tok-8a7b6c5d4e") == "Authorization: Bearer ***"
    assert "tok-8a7b6c5d4e" not in repr(StaticToken("tok-8a7b6c5d4e"))


def test_slices_follow_the_configured_width(served, monkeypatch):
    monkeypatch.setenv("DETECTION_LOGANALYTICS_SLICE", "12h")
    fake = served()
    source(fake).scan("AzureActivity", START, END, RULE.inputs["AzureActivity"])
    assert len(fake.sent("rows")) == len(fake.sent("profile")) == 4  # 48 h / 12 h


def test_a_bad_slice_setting_is_a_usage_error(monkeypatch):
    monkeypatch.setenv("DETECTION_LOGANALYTICS_SLICE", "soon")
    with pytest.raises(UsageError, match="DETECTION_LOGANALYTICS_SLICE"):
        LogAnalyticsSource([WORKSPACE], endpoint="http://127.0.0.1:1")


def test_a_read_timeout_is_retried(served):
    from azure.core.exceptions import ServiceResponseError

    fake, waits = served(), []

    class TimesOutOnce:
        def __init__(self, client):
            self.client, self.timed_out = client, False

        def query_workspace(self, *args, **kwargs):
            if not self.timed_out:
                self.timed_out = True
                raise ServiceResponseError("Read timed out. (read timeout=210)")
            return self.client.query_workspace(*args, **kwargs)

    client = TimesOutOnce(source(fake).client)
    remote = LogAnalyticsSource([WORKSPACE], endpoint=fake.url, client=client, sleep=waits.append)
    assert len(remote.scan("AzureActivity", START, END, RULE.inputs["AzureActivity"]).frame)
    assert client.timed_out and len(waits) == 1


RESOURCE = (
    "/subscriptions/4c1b9f52-33aa-4d0e-8f6b-0a1b2c3d4e5f/resourceGroups/rg-sec/providers/"
    "Microsoft.OperationalInsights/workspaces/sentinel-ws"
)


@pytest.mark.parametrize(
    "url, expected",
    [
        (f"loganalytics://{WORKSPACE}", [WORKSPACE]),
        (f"loganalytics:/{WORKSPACE}", [WORKSPACE]),
        (f"loganalytics://{RESOURCE}", [RESOURCE]),
        (f"loganalytics:/{RESOURCE}", [RESOURCE]),
        (f"loganalytics://{RESOURCE},{WS2}", [RESOURCE, WS2]),
    ],
    ids=[
        "workspace id",
        "a URL whose slashes a Path collapsed",
        "resource id",
        "resource id through a Path",
        "resource id and workspace id",
    ],
)
def test_workspaces_are_read_from_the_url_as_written_or_after_a_path(url, expected):
    assert from_url(url).targets == expected


def test_the_library_imports_no_azure_sdk_until_a_query_is_sent():
    import subprocess
    import sys

    code = (
        "import sys; import include.detection.remote as r; r.source_class('loganalytics'); "
        "r.source_class('kusto'); print(sorted(m for m in sys.modules if m.startswith('azure')"
        " or m.startswith('airflow')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_answer_that_is_not_json_is_retried_then_fails_by_name(served):
    fake, waits = served(), []
    fake.down(status=200, body="<html>proxy says hello</html>")
    with pytest.raises(SourceError, match="not JSON.*proxy says hello"):
        source(fake, waits=waits, attempts=2).scan(
            "AzureActivity", START, END, RULE.inputs["AzureActivity"]
        )
    assert len(fake.requests) == 2


def test_a_column_one_workspace_lacks_is_missing_for_the_whole_scan(served):
    columns = {c: k for c, k in RULE.inputs["AzureActivity"].items() if c != "CallerIpAddress"}
    thin = [
        {k: v for k, v in r.items() if k != "CallerIpAddress"}
        for r in sample_tables()["AzureActivity"]
    ]
    fake = served(
        {WORKSPACE: sample_tables(), WS2: {"AzureActivity": thin}},
        schemas={WS2: {"AzureActivity": columns}},
    )
    scan = source(fake, workspaces=(WORKSPACE, WS2)).scan(
        "AzureActivity", START, END, RULE.inputs["AzureActivity"]
    )
    assert scan.missing_columns == ["CallerIpAddress"]
    assert list(scan.frame.columns) == list(columns)
    assert len(scan.frame) == sum(q["rows"] for q in fake.sent("rows")) > 0
