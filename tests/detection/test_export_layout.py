"""Azure Monitor's workspace data export as a source (issue #10): the `am-*` containers, pruned
by the window from the folder names, late records within the slack, several workspaces, and the
same `detect` output as the same rows in a JSONL folder, on memory://, and in a Log Analytics
workspace."""

import json
import os
from uuid import uuid4

import fsspec
import pandas as pd
import pytest

from detection_tools import lakegen as demo
from include.detection import cli, sources
from include.detection.errors import SourceError
from include.detection.sources import export
from tests.detection.test_sources_hostile import WAIT, release, within
from tests.factories import RULE, activity_row, run_command, ueba_row
from tests.fakes import layouts
from tests.fakes.layouts import OTHER_WORKSPACE_ID, WORKSPACE_ID, export_path
from tests.fakes.loganalytics import TOKEN, WORKSPACE, FakeLogAnalytics

START, END = pd.Timestamp("2026-10-30T00:00:00Z"), pd.Timestamp("2026-11-01T00:00:00Z")
COLS = RULE.inputs["AzureActivity"]
UEBA_COLS = RULE.inputs["BehaviorAnalytics"]


@pytest.fixture(autouse=True)
def no_slack_setting(monkeypatch):
    monkeypatch.delenv("DETECTION_EXPORT_SLACK", raising=False)


@pytest.fixture
def memory():
    """A fresh root on fsspec's in-memory filesystem (shared by the process): removed after."""
    fs = fsspec.filesystem("memory")
    root = f"/export-{uuid4().hex}"
    yield fs, root
    for key in [k for k in fs.store if k.startswith(root + "/")]:  # fs.rm is quadratic
        del fs.store[key]
    fs.pseudo_dirs[:] = [d for d in fs.pseudo_dirs if not d.startswith(root)]


def put_rows(folder, table, workspace, exported, rows, name=None):
    """Rows as one export file of `workspace` exported at `exported`."""
    path = folder / export_path(table, workspace, pd.Timestamp(exported))
    if name:
        path = path.with_name(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    return path


def scan(root, table="AzureActivity", source=None, **kwargs):
    source = source or sources.open_source(root)
    return source.scan(table, START, END, RULE.inputs[table], prefilter=False, **kwargs)


# --- The layout is recognised, and pruned by the window ---------------------------------------


def test_a_root_holding_am_containers_is_read_in_the_export_layout(tmp_path):
    put_rows(
        tmp_path,
        "AzureActivity",
        WORKSPACE_ID,
        "2026-10-31T10:07:00Z",
        [activity_row(TimeGenerated="2026-10-31T10:05:00Z")],
    )
    got = scan(tmp_path)
    assert got.format == "export" and got.rows_in_window == 1
    assert got.source == str(tmp_path / "am-azureactivity")
    assert sources.locate(tmp_path, "AzureActivity") == ("export", tmp_path / "am-azureactivity")


def test_only_the_hours_of_the_window_and_one_hour_each_side_are_read(tmp_path):
    """Every hour from 3 days before to 3 days after holds one record; the scan reads the hours
    [start - 1h, end + 1h): 50 files, 48 records in the window."""
    for h in range(-72, 48 + 72):
        t = START + pd.Timedelta(hours=h, minutes=20)
        put_rows(
            tmp_path,
            "AzureActivity",
            WORKSPACE_ID,
            t,
            [activity_row(TimeGenerated=t.isoformat(), CorrelationId=f"h{h}")],
        )
    got = scan(tmp_path)
    assert got.rows_read == 48 + 2
    assert got.rows_in_window == len(got.frame) == 48
    assert got.frame["TimeGenerated"].min() == START + pd.Timedelta(minutes=20)


def test_folders_outside_the_window_are_not_even_listed(tmp_path):
    """A year, month and day far from the window hold what no export writes: they would fail
    the scan if they were listed, and they are not."""
    put_rows(tmp_path, "AzureActivity", WORKSPACE_ID, "2026-10-31T10:00:00Z", [activity_row()])
    ws = tmp_path / "am-azureactivity" / f"WorkspaceResourceId={WORKSPACE_ID}"
    (ws / "y=2019").mkdir()
    (ws / "y=2019" / "not-a-month.txt").write_text("x")
    (ws / "y=2026" / "m=03").mkdir()
    (ws / "y=2026" / "m=03" / "junk").write_text("x")
    (ws / "y=2026" / "m=10" / "d=01").mkdir()
    (ws / "y=2026" / "m=10" / "d=01" / "junk").write_text("x")
    assert scan(tmp_path).rows_in_window == 1


LATE = {
    "exported 30 min late, past the window's end": (pd.Timedelta(minutes=30), None, True),
    "exported 3 h late, beyond the default slack": (pd.Timedelta(hours=3), None, False),
    "exported 3 h late, DETECTION_EXPORT_SLACK=4h": (pd.Timedelta(hours=3), "4h", True),
}


@pytest.mark.parametrize("delay, slack, read", LATE.values(), ids=LATE.keys())
def test_a_late_record_is_read_when_it_arrived_within_the_slack(
    tmp_path, monkeypatch, delay, slack, read
):
    if slack:
        monkeypatch.setenv("DETECTION_EXPORT_SLACK", slack)
    t = END - pd.Timedelta(minutes=1)
    put_rows(
        tmp_path,
        "AzureActivity",
        WORKSPACE_ID,
        t + delay,
        [activity_row(TimeGenerated=t.isoformat())],
    )
    put_rows(tmp_path, "AzureActivity", WORKSPACE_ID, "2026-10-31T10:00:00Z", [activity_row()])
    assert scan(tmp_path).rows_in_window == (2 if read else 1)


def test_older_hourly_files_and_five_minute_files_are_both_read(tmp_path):
    put_rows(
        tmp_path,
        "AzureActivity",
        WORKSPACE_ID,
        "2026-10-30T10:00:00Z",
        [
            activity_row(TimeGenerated="2026-10-30T10:10:00Z"),
            activity_row(TimeGenerated="2026-10-30T10:50:00Z"),
        ],
        name="PT1H.json",
    )
    for minute in (0, 5, 55):
        put_rows(
            tmp_path,
            "AzureActivity",
            WORKSPACE_ID,
            f"2026-10-31T10:{minute:02d}:00Z",
            [activity_row(TimeGenerated=f"2026-10-31T10:{minute:02d}:30Z")],
        )
    got = scan(tmp_path)
    assert got.rows_in_window == 5 and got.frame["TimeGenerated"].is_monotonic_increasing


def test_a_bad_record_is_quarantined_naming_its_file_and_line(tmp_path):
    path = put_rows(
        tmp_path, "AzureActivity", WORKSPACE_ID, "2026-10-31T10:00:00Z", [activity_row()]
    )
    with open(path, "a") as fh:
        fh.write("{not json\n")
    got = scan(tmp_path)
    (entry,) = got.quarantine
    assert (entry["source"], entry["line"], entry["kept"]) == (str(path), 2, False)
    assert entry["reason"].startswith("not JSON") and got.rows_in_window == 1


# --- Anything that does not fit the layout is named, never skipped -----------------------------


def _ws(root):
    return root / "am-azureactivity" / f"WorkspaceResourceId={WORKSPACE_ID}"


ODD = {
    "a file beside the workspaces": (
        lambda r: (r / "am-azureactivity" / "README").write_text("x"),
        "unexpected file",
    ),
    "a folder that is not WorkspaceResourceId=": (
        lambda r: (r / "am-azureactivity" / "tenant-a").mkdir(),
        "unexpected folder",
    ),
    "a year that is not y=YYYY": (lambda r: (_ws(r) / "year=2026").mkdir(), "expected a folder y"),
    "month 13": (
        lambda r: (_ws(r) / "y=2026" / "m=13" / "d=01").mkdir(parents=True),
        "not a date (2026-13-01)",
    ),
    "a file not under h=HH/m=MM": (
        lambda r: (_ws(r) / "y=2026" / "m=10" / "d=31" / "PT05M.json").write_text("{}\n"),
        "unexpected file",
    ),
    "a file that is not .json": (
        lambda r: (_ws(r) / "y=2026" / "m=10" / "d=31" / "h=10" / "m=00" / "x.csv").write_text("a"),
        "unexpected file",
    ),
}


@pytest.mark.parametrize("make, problem", ODD.values(), ids=ODD.keys())
def test_an_entry_that_does_not_fit_the_layout_is_a_source_error_naming_it(tmp_path, make, problem):
    put_rows(tmp_path, "AzureActivity", WORKSPACE_ID, "2026-10-31T10:00:00Z", [activity_row()])
    make(tmp_path)
    with pytest.raises(SourceError) as err:
        scan(tmp_path)
    assert str(err.value).startswith("AzureActivity: ") and problem in str(err.value)
    assert str(tmp_path / "am-azureactivity") in str(err.value)


def test_a_container_without_a_workspace_is_a_source_error(tmp_path):
    (tmp_path / "am-azureactivity").mkdir()
    with pytest.raises(SourceError, match="AzureActivity: no workspace in the data export"):
        scan(tmp_path)


def test_a_table_both_exported_and_as_jsonl_is_ambiguous(tmp_path):
    put_rows(tmp_path, "AzureActivity", WORKSPACE_ID, "2026-10-31T10:00:00Z", [activity_row()])
    (tmp_path / "AzureActivity.jsonl").write_text(json.dumps(activity_row()) + "\n")
    with pytest.raises(SourceError, match="found in more than one format"):
        scan(tmp_path)


def test_a_fifo_in_an_hour_folder_is_refused_without_waiting(tmp_path):
    put_rows(tmp_path, "AzureActivity", WORKSPACE_ID, "2026-10-31T10:00:00Z", [activity_row()])
    fifo = _ws(tmp_path) / "y=2026" / "m=10" / "d=31" / "h=11" / "m=00" / "PT05M.json"
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    try:
        finished, outcome = within(WAIT, scan, tmp_path)
    finally:
        release(fifo)
    assert finished, "the scan blocked on a FIFO"
    assert isinstance(outcome, SourceError) and f"{fifo} is a FIFO" in str(outcome)


# --- Several workspaces in one export ----------------------------------------------------------


def two_workspaces(root):
    put_rows(
        root,
        "AzureActivity",
        WORKSPACE_ID,
        "2026-10-31T10:00:00Z",
        [activity_row(CorrelationId="west")],
    )
    put_rows(
        root,
        "AzureActivity",
        OTHER_WORKSPACE_ID,
        "2026-10-31T10:00:00Z",
        [activity_row(CorrelationId="tenant-b", TimeGenerated="2026-10-31T09:00:00Z")],
    )
    put_rows(root, "BehaviorAnalytics", WORKSPACE_ID, "2026-10-31T10:00:00Z", [ueba_row()])


def test_every_workspace_of_an_export_is_read_unless_one_is_chosen(tmp_path):
    two_workspaces(tmp_path)
    source = sources.open_source(tmp_path)
    assert source.targets == sorted([WORKSPACE_ID, OTHER_WORKSPACE_ID])
    assert sorted(scan(tmp_path, source=source).frame["CorrelationId"]) == ["tenant-b", "west"]
    west = source.only(WORKSPACE_ID.upper())
    assert west.targets == [WORKSPACE_ID]
    assert list(scan(tmp_path, source=west).frame["CorrelationId"]) == ["west"]
    assert list(scan(tmp_path, source=source.only(OTHER_WORKSPACE_ID)).frame["CorrelationId"]) == [
        "tenant-b"
    ]


def test_a_workspace_a_table_was_not_exported_for_is_named(tmp_path):
    two_workspaces(tmp_path)
    tenant_b = sources.open_source(tmp_path).only(OTHER_WORKSPACE_ID)
    with pytest.raises(SourceError) as err:
        scan(tmp_path, "BehaviorAnalytics", source=tenant_b)
    assert str(err.value).startswith(
        f"BehaviorAnalytics: workspace {OTHER_WORKSPACE_ID} has no data export"
    )


def test_choosing_a_workspace_of_a_folder_that_has_none_is_a_source_error(tmp_path):
    (tmp_path / "AzureActivity.jsonl").write_text(json.dumps(activity_row()) + "\n")
    with pytest.raises(SourceError, match="holds no workspaces to choose from"):
        scan(tmp_path, source=sources.open_source(tmp_path).only(WORKSPACE_ID))


# --- The same rows give the same `detect` output, byte for byte --------------------------------

DEMO_END = f"{demo.DEMO_ALERT_DATE}T00:00:00Z"


@pytest.fixture(scope="module")
def demo_rows():
    return layouts.rows_of(demo.generate(demo.DEMO_START, demo.DEMO_DAYS))


def late_by_time(row, i):
    """A third of the records reach the export 35 minutes late, decided by their time alone."""
    return (
        pd.Timedelta(minutes=35)
        if pd.Timestamp(row["TimeGenerated"]).second % 3 == 0
        else pd.Timedelta(0)
    )


def detect_bytes(capsys, source, out) -> tuple[bytes, str]:
    code = cli.main(["detect", "--source", str(source), "--end", DEMO_END, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    return out.read_bytes(), err


def test_the_same_rows_give_the_same_detect_output_in_every_layout_and_place(
    tmp_path, capsys, memory, monkeypatch, demo_rows
):
    """Point 5 of issue #10: a JSONL folder, the export layout on disk and on memory://, a JSONL
    folder on memory://, and a Log Analytics workspace holding the demo rows: one result file."""
    fs, root = memory
    layouts.jsonl(layouts.on_disk(tmp_path / "jsonl"), demo_rows)
    layouts.export(
        layouts.on_disk(tmp_path / "export"),
        demo_rows,
        delay=late_by_time,
        hourly_before="2026-10-29T06:00:00Z",
    )
    layouts.export(layouts.on_fsspec(fs, f"{root}/export"), demo_rows, delay=late_by_time)
    layouts.jsonl(layouts.on_fsspec(fs, f"{root}/jsonl"), demo_rows)
    fake = FakeLogAnalytics({WORKSPACE: demo_rows}).start()
    monkeypatch.setenv("DETECTION_LOGANALYTICS_ENDPOINT", fake.url)
    monkeypatch.setenv("DETECTION_LOGANALYTICS_TOKEN", TOKEN)
    monkeypatch.setenv("DETECTION_LOGANALYTICS_SLICE", "1d")
    places = {
        "export": tmp_path / "export",
        "memory-export": f"memory://{root}/export",
        "memory-jsonl": f"memory://{root}/jsonl",
        "loganalytics": f"loganalytics://{WORKSPACE}",
    }
    try:
        expected, err = detect_bytes(capsys, tmp_path / "jsonl", tmp_path / "jsonl.jsonl")
        assert expected.count(b"\n") >= 3 and "rows read (jsonl)" in err
        for name, source in places.items():
            got, err = detect_bytes(capsys, source, tmp_path / f"{name}.jsonl")
            assert got == expected, name
            assert "data quality: AzureActivity: passed" in err, name
    finally:
        fake.stop()
    # Not by luck of the rows: the late records make the export's file order differ from the
    # time order, and each layout still hands over the same frame, row for row.
    start = pd.Timestamp(DEMO_END) - pd.Timedelta(days=2)
    for table in ("AzureActivity", "BehaviorAnalytics"):
        frames = [
            sources.read_table(
                where, table, start, pd.Timestamp(DEMO_END), RULE.inputs[table]
            ).frame
            for where in (tmp_path / "jsonl", places["export"], places["memory-export"])
        ]
        pd.testing.assert_frame_equal(frames[1], frames[0])
        pd.testing.assert_frame_equal(frames[2], frames[0])
    assert (
        "rows read (export)"
        in detect_bytes(capsys, tmp_path / "export", tmp_path / "again.jsonl")[1]
    )


def test_the_export_reads_only_the_window_and_its_slack(tmp_path, demo_rows):
    """The demo holds 7 days; a 2-day window reads 2 days and 2 hours of export files."""
    layouts.export(layouts.on_disk(tmp_path), demo_rows)
    start, end = pd.Timestamp(DEMO_END) - pd.Timedelta(days=2), pd.Timestamp(DEMO_END)
    got = sources.read_table(tmp_path, "AzureActivity", start, end, COLS, prefilter=False)
    times = pd.to_datetime(
        [r["TimeGenerated"] for r in demo_rows["AzureActivity"]], utc=True, format="ISO8601"
    )
    lo, hi = start - pd.Timedelta(hours=1), end + pd.Timedelta(hours=1)
    assert got.rows_read == int(((times >= lo) & (times < hi)).sum()) < len(times)
    assert got.rows_in_window == int(((times >= start) & (times < end)).sum())


def test_export_slack_is_a_duration(monkeypatch, tmp_path):
    from include.detection.errors import UsageError

    monkeypatch.setenv("DETECTION_EXPORT_SLACK", "soon")
    with pytest.raises(UsageError, match="DETECTION_EXPORT_SLACK: not a duration: 'soon'"):
        sources.open_source(tmp_path)
    assert export.slack_from_env("0") == pd.Timedelta(0)
    assert export.slack_from_env("90m") == pd.Timedelta(minutes=90)


def test_run_commands_split_across_export_files_still_correlate(tmp_path, capsys):
    """One execution's events in three 5-minute files and two hours: one result, as from JSONL."""
    rows = run_command("split", start="2026-10-31T10:04:59Z")
    for i, row in enumerate(rows):
        put_rows(
            tmp_path / "export",
            "AzureActivity",
            WORKSPACE_ID,
            pd.Timestamp(row["TimeGenerated"]) + pd.Timedelta(minutes=28 * i),
            [row],
        )
    put_rows(
        tmp_path / "export", "BehaviorAnalytics", WORKSPACE_ID, "2026-10-31T09:31:00Z", [ueba_row()]
    )
    frames = {
        t: sources.read_table(tmp_path / "export", t, START, END, RULE.inputs[t]).frame
        for t in ("AzureActivity", "BehaviorAnalytics")
    }
    from include.detection.correlation import correlate

    result = correlate(frames["AzureActivity"], frames["BehaviorAnalytics"])
    assert list(result["CorrelationId"]) == ["split"]
    assert result["StartTime"][0] == pd.Timestamp("2026-10-31T10:04:59Z")
    assert result["EndTime"][0] == pd.Timestamp("2026-10-31T10:05:01Z")
