"""One contract for every kind of source (issue #10): the same rows, kept as a local JSONL folder,
Parquet, a portal CSV, a folder on fsspec's memory://, Azure Monitor's data export layout (on
disk and on memory://), a Log Analytics workspace (the loopback fake) and an Azure Data Explorer
database (duckdb-kql serving a DuckDB file), opened by `sources.open_source(url)`, give the same
scan: frames, counts, hourly profile, newest row, and the same `correlate()` result.

Times are at microseconds: duckdb-kql answers at that precision (the 100 ns path is covered by
test_loganalytics.py and test_sources.py)."""

import json
from types import SimpleNamespace
from uuid import uuid4

import fsspec
import pandas as pd
import pytest

from include.detection import correlation, sources
from tests.detection.test_adx import _serve, database_file
from tests.detection.test_loganalytics import comparable
from tests.factories import RULE
from tests.fakes import layouts
from tests.fakes.loganalytics import TOKEN, WINDOW, WORKSPACE, FakeLogAnalytics, sample_tables
from tests.oracle import as_counter, normalize_ours

START, END = (pd.Timestamp(t) for t in WINDOW)
TABLES = sorted(RULE.inputs)
FIRST_STEP = {
    "AzureActivity": correlation.where_operation_is_run_command,
    "BehaviorAnalytics": correlation.where_azure_ad_uncommon_action,
}


def late(row, i):
    """Some records reach the export 40 minutes after their TimeGenerated (the next hour's
    folder, or past the window's end): decided by the time alone, so rows that share a time
    share a file."""
    return pd.Timedelta(minutes=40) if _time(row).second % 2 else pd.Timedelta(0)


def _time(row):
    return pd.Timestamp(row["TimeGenerated"])


# kind -> (how to write the rows there, the name a Source reports)
KINDS = {
    "local folder JSONL": "files",
    "local Parquet": "files",
    "CSV": "files",
    "fsspec memory:// folder": "files",
    "export layout on local disk": "files",
    "export layout on memory://": "files",
    "Log Analytics (fake)": "loganalytics",
    "ADX (duckdb-kql)": "kusto",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Every kind holding sample_tables("us"); servers on loopback; memory:// cleaned after."""
    base = tmp_path_factory.mktemp("contract")
    tables = sample_tables("us")
    memory = fsspec.filesystem("memory")
    root = f"/contract-{uuid4().hex}"
    layouts.jsonl(layouts.on_disk(base / "jsonl"), tables)
    layouts.parquet(layouts.on_disk(base / "parquet"), tables, RULE.inputs)
    layouts.portal_csv(layouts.on_disk(base / "csv"), tables, RULE.inputs)
    layouts.jsonl(layouts.on_fsspec(memory, f"{root}/jsonl"), tables)
    layouts.export(
        layouts.on_disk(base / "export"), tables, delay=late, hourly_before="2026-10-30T12:00:00Z"
    )
    layouts.export(layouts.on_fsspec(memory, f"{root}/export"), tables, delay=late)
    la = FakeLogAnalytics({WORKSPACE: tables}).start()
    server, thread = _serve(database_file(base / "lake.duckdb", tables))
    urls = {
        "local folder JSONL": str(base / "jsonl"),
        "local Parquet": f"file://{base / 'parquet'}",
        "CSV": str(base / "csv"),
        "fsspec memory:// folder": f"memory://{root}/jsonl",
        "export layout on local disk": str(base / "export"),
        "export layout on memory://": f"memory://{root}/export",
        "Log Analytics (fake)": f"loganalytics://{WORKSPACE}",
        "ADX (duckdb-kql)": f"kusto://{server.url.split('://')[1]}/{server.database}",
    }
    yield SimpleNamespace(urls=urls, la=la, reference=base / "jsonl")
    la.stop()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
    memory.rm(root, recursive=True)


@pytest.fixture
def remote_env(world, monkeypatch):
    monkeypatch.setenv("DETECTION_LOGANALYTICS_ENDPOINT", world.la.url)
    monkeypatch.setenv("DETECTION_LOGANALYTICS_TOKEN", TOKEN)
    for prefix in ("LOGANALYTICS", "KUSTO"):  # whole days: fewer queries, same answer
        monkeypatch.setenv(f"DETECTION_{prefix}_SLICE", "1d")
        for key in ("MIN_SLICE", "ATTEMPTS", "BACKOFF", "MAX_WAIT", "TIMEOUT"):
            monkeypatch.delenv(f"DETECTION_{prefix}_{key}", raising=False)
    monkeypatch.delenv("DETECTION_EXPORT_SLACK", raising=False)


@pytest.fixture(params=list(KINDS), ids=list(KINDS))
def kind(request, world, remote_env):
    return request.param


def opened(world, kind):
    return sources.open_source(world.urls[kind])


def reference(world, table, prefilter=True):
    return sources.read_table(world.reference, table, START, END, RULE.inputs[table], prefilter)


def test_each_url_opens_a_source_of_its_kind(world, kind):
    source = opened(world, kind)
    assert isinstance(source, sources.Source) and source.name == KINDS[kind]
    assert sources.open_source(source) is source, "an opened source is taken as it is"
    assert isinstance(source.url, str) and TOKEN not in source.url


@pytest.mark.parametrize("table", TABLES, ids=TABLES)
def test_every_kind_scans_the_same_rows_and_profile(world, kind, table):
    source = opened(world, kind)
    scan = source.scan(table, START, END, RULE.inputs[table], prefilter=False)
    local = reference(world, table, prefilter=False)
    assert isinstance(scan, sources.Scan) and scan.table == table
    assert list(scan.frame.columns) == list(RULE.inputs[table])
    assert list(scan.frame.dtypes) == list(local.frame.dtypes)
    pd.testing.assert_frame_equal(comparable(scan.frame, table), comparable(local.frame, table))
    assert scan.frame["TimeGenerated"].is_monotonic_increasing, "rows come in time order"
    assert (scan.rows_in_window, scan.hourly, scan.newest) == (
        local.rows_in_window,
        local.hourly,
        local.newest,
    )
    assert scan.rows_in_window == len(scan.frame) > 0
    assert scan.missing_columns == [] and scan.quarantine == []
    assert scan.summary()["rows_in_window"] == local.rows_in_window


@pytest.mark.parametrize("table", TABLES, ids=TABLES)
def test_every_kind_keeps_every_row_the_rules_first_where_keeps(world, kind, table):
    """A prefiltered scan may keep more than the rule's first `where` (files: a necessary
    condition), never less; Kusto applies it exactly. The profile still covers every row."""
    scan = opened(world, kind).scan(table, START, END, RULE.inputs[table])
    local = reference(world, table)
    expected = FIRST_STEP[table](local.frame).reset_index(drop=True)
    got = FIRST_STEP[table](scan.frame).reset_index(drop=True)
    assert 0 < len(expected) < local.rows_in_window
    pd.testing.assert_frame_equal(comparable(got, table), comparable(expected, table))
    assert (scan.rows_in_window, scan.hourly, scan.newest) == (
        local.rows_in_window,
        local.hourly,
        local.newest,
    )


def test_every_kind_gives_the_same_correlate_result(world, kind):
    source = opened(world, kind)
    ours = correlation.correlate(
        *(
            source.scan(t, START, END, RULE.inputs[t]).frame
            for t in ("AzureActivity", "BehaviorAnalytics")
        )
    )
    theirs = correlation.correlate(
        *(reference(world, t).frame for t in ("AzureActivity", "BehaviorAnalytics"))
    )
    assert len(theirs) >= 3
    assert as_counter(normalize_ours(ours)) == as_counter(normalize_ours(theirs))


def test_read_table_opens_any_kind_and_scans(world, kind):
    scan = sources.read_table(
        world.urls[kind],
        "BehaviorAnalytics",
        START,
        END,
        RULE.inputs["BehaviorAnalytics"],
        prefilter=False,
    )
    assert scan.rows_in_window == reference(world, "BehaviorAnalytics", False).rows_in_window


def test_the_reference_rows_hold_what_the_contract_is_about(world):
    """The sample is not trivially equal everywhere: rows on both window edges, the 7th digit
    dropped to microseconds, late exports, dynamic values as objects and as text."""
    local = reference(world, "AzureActivity", prefilter=False)
    assert local.frame["TimeGenerated"].min() == START
    rows = [
        json.loads(line)
        for line in (world.reference / "BehaviorAnalytics.jsonl").read_text().splitlines()
    ]
    assert {type(r["ActivityInsights"]) for r in rows} == {dict, str}
    assert any(late(r, 0) for r in rows) and not all(late(r, 0) for r in rows)


def test_detect_over_adx_writes_what_detect_over_the_folder_writes(tmp_path, capsys, monkeypatch):
    """The command line on a kusto:// URL (the demo rows at microseconds, as duckdb-kql holds
    them): the same result file, byte for byte, as on the same rows in a folder."""
    import re

    from detection_tools import lakegen as demo
    from include.detection import cli

    rows = layouts.rows_of(demo.generate(demo.DEMO_START, demo.DEMO_DAYS))
    for table_rows in rows.values():
        for row in table_rows:
            row["TimeGenerated"] = re.sub(r"(\.\d{6})\d", r"\1", row["TimeGenerated"])
    layouts.jsonl(layouts.on_disk(tmp_path / "folder"), rows)
    server, thread = _serve(database_file(tmp_path / "demo.duckdb", rows))
    monkeypatch.setenv("DETECTION_KUSTO_SLICE", "1d")
    end = f"{demo.DEMO_ALERT_DATE}T00:00:00Z"
    try:
        outs = []
        for i, source in enumerate(
            (tmp_path / "folder", f"kusto://{server.url.split('://')[1]}/{server.database}")
        ):
            out = tmp_path / f"r{i}.jsonl"
            code = cli.main(["detect", "--source", str(source), "--end", end, "--out", str(out)])
            assert code == 0, capsys.readouterr().err
            outs.append(out.read_bytes())
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert outs[0].count(b"\n") >= 3 and outs[1] == outs[0]
    assert "rows read (kusto)" in capsys.readouterr().err
