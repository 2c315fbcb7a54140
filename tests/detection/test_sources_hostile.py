"""Issue #9, reading side: a hostile or broken source never runs code, never crashes on text,
never blocks, and never hides rows. Each test is a reproduction that failed before the fix."""

import json
import os
import threading

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from include.detection import cli, quarantine, results, sources
from include.detection.errors import SourceError
from tests.detection.test_cli import ACTIVITY, UEBA, write_jsonl
from tests.detection.test_sources import COLS, END, ROWS, START
from tests.factories import RULE, activity_row, run_command, ueba_row

END_ARG = "2026-11-01T00:00:00Z"
WAIT = 20  # seconds before a read counts as hung (a hang is the bug, never a slow machine)


def write_parquet(path, rows):
    """`rows` as one Parquet file at `path` (any name), TimeGenerated timestamp[ns, UTC]."""
    frame = pd.DataFrame(rows)
    frame["TimeGenerated"] = pd.to_datetime(frame["TimeGenerated"], utc=True, format="ISO8601")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.set_column(
        table.schema.get_field_index("TimeGenerated"),
        "TimeGenerated",
        table["TimeGenerated"].cast(pa.timestamp("ns", tz="UTC")),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:  # pyarrow's own path handling would refuse some names
        pq.write_table(table, fh)


def same_scan(a, b):
    assert (a.rows_read, a.rows_in_window, a.hourly, a.newest) == (
        b.rows_read,
        b.rows_in_window,
        b.hourly,
        b.newest,
    )

    def order(frame):  # the order of files, hence of rows, means nothing
        return frame.sort_values(["TimeGenerated", "CorrelationId"]).reset_index(drop=True)

    pd.testing.assert_frame_equal(order(a.frame), order(b.frame))


def files_under(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def cli_detect(capsys, source, out, *extra):
    code = cli.main(
        ["detect", "--source", str(source), "--end", END_ARG, "--out", str(out), *extra]
    )
    return code, capsys.readouterr().err


# --- File names are data: nothing from a path is ever SQL text ------------------------------------

BREAKOUT = "a'[:-3] || $$part-0.parquet$$]);COPY (SELECT 42 AS pwned) TO $$PWN.csv$$;SELECT 1 --"
INJECTIONS = {
    "single-quote": [BREAKOUT + '"x.parquet'],
    "dollar-quote": ["b\"'$$);COPY (SELECT 43) TO $$PWN.csv$$;--$$x.parquet"],
    "semicolon": ["c\"']);COPY (SELECT 44) TO 'PWN.csv';SELECT ('x.parquet"],
    "line-comment": ["d\"' -- ]);COPY (SELECT 45) TO 'PWN.csv' x.parquet"],
    "block-comment": ["e\"'", "* ]);COPY (SELECT 46) TO 'PWN.csv';", "x.parquet"],
    "newline": ["f\n']);COPY (SELECT 47) TO 'PWN.csv';\n--x.parquet"],
    "backslash": ["g\\']);COPY (SELECT 48) TO 'PWN.csv';--\\x.parquet"],
    "unicode": [
        "h\u2028\u200b\u02bc\uff07'\"é\U0001f600]);COPY (SELECT 49) TO 'PWN.csv';--.parquet"
    ],
}


@pytest.mark.parametrize("parts", INJECTIONS.values(), ids=INJECTIONS.keys())
def test_a_hostile_parquet_file_name_runs_no_sql_and_reads_the_same_rows(
    tmp_path, monkeypatch, parts
):
    """The name sits beside an ordinary part-0.parquet, which the single-quote break-out
    splices back in: before, that read succeeded and its COPY wrote PWN.csv."""
    plain, hostile, cwd = tmp_path / "plain", tmp_path / "hostile", tmp_path / "cwd"
    more = [activity_row(CorrelationId="from-the-hostile-name")]
    for src, name in ((plain, "part-1.parquet"), (hostile, os.path.join(*parts))):
        write_parquet(src / "AzureActivity" / "date=2026-10-31" / "part-0.parquet", ROWS)
        write_parquet(src / "AzureActivity" / "date=2026-10-31" / name, more)
    written = files_under(tmp_path)
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    try:
        scan = sources.read_table(hostile, "AzureActivity", START, END, COLS)
    finally:  # checked even when the read fails: before, the COPY ran and then the read failed
        assert files_under(tmp_path) == written, "reading wrote a file"
    same_scan(scan, sources.read_table(plain, "AzureActivity", START, END, COLS))


def test_a_hostile_source_folder_name_reads_the_same_rows(tmp_path, monkeypatch):
    plain, hostile = tmp_path / "plain", tmp_path / "lake']);COPY (SELECT 1) TO 'PWN.csv';--\"\n$$"
    for src in (plain, hostile):
        write_parquet(src / "AzureActivity" / "date=2026-10-31" / "part-0.parquet", ROWS)
    monkeypatch.chdir(tmp_path)
    scan = sources.read_table(hostile, "AzureActivity", START, END, COLS)
    assert not list(tmp_path.rglob("PWN*"))
    same_scan(scan, sources.read_table(plain, "AzureActivity", START, END, COLS))


def test_glob_characters_in_file_names_read_each_file_exactly_once(tmp_path):
    """DuckDB expands * ? [ in a file name: "*.parquet" would read every file beside it again."""
    folder = tmp_path / "AzureActivity" / "date=2026-10-31"
    names = [
        "part-0.parquet",
        "*.parquet",
        "p?rt-0.parquet",
        "[p]art-0.parquet",
        "a]b{c,d}.parquet",
    ]
    for i, name in enumerate(names):
        write_parquet(folder / name, [activity_row(CorrelationId=f"file-{i}")])
    scan = sources.read_table(tmp_path, "AzureActivity", START, END, COLS)
    assert scan.rows_read == len(names)
    assert sorted(scan.frame["CorrelationId"]) == sorted(f"file-{i}" for i in range(len(names)))


def test_a_name_duckdb_can_only_read_as_a_pattern_is_refused_naming_it(tmp_path):
    folder = tmp_path / "AzureActivity"
    write_parquet(folder / "part-0.parquet", ROWS)
    write_parquet(folder / "odd\\*.parquet", ROWS)
    with pytest.raises(
        SourceError,
        match=r"AzureActivity: cannot read .*odd\\\\\*\.parquet'?: "
        "DuckDB reads a name holding both a backslash",
    ):
        sources.read_table(tmp_path, "AzureActivity", START, END, COLS)


@pytest.mark.parametrize(
    "column, value",
    [("OperationNameValue", "nope"), ("Caller", "mallory")],
    ids=["a-run-command-renamed-away", "the-caller-rewritten"],
)
def test_a_partition_folder_named_like_a_column_does_not_overwrite_the_rows(
    tmp_path, column, value
):
    """Only `date=` folders mean something (pruning); the rows' values come from the files."""
    write_parquet(
        tmp_path / "AzureActivity" / "date=2026-10-31" / f"{column}={value}" / "part-0.parquet",
        ROWS,
    )
    scan = sources.read_table(tmp_path, "AzureActivity", START, END, COLS)
    assert len(scan.frame) == 3 and value not in set(scan.frame[column])


def test_only_plain_identifiers_from_the_rule_reach_sql(tmp_path):
    write_parquet(tmp_path / "AzureActivity" / "part-0.parquet", ROWS)
    with pytest.raises(Exception, match="not a plain identifier"):
        sources.read_table(
            tmp_path, "AzureActivity", START, END, {**COLS, 'Caller" FROM x; --': "string"}
        )


# --- DuckDB's errors become SourceErrors naming the table, the column and the file -------------


def test_invalid_utf8_in_a_parquet_string_is_a_source_error_naming_table_column_and_file(
    tmp_path, capsys
):
    folder = tmp_path / "AzureActivity"
    folder.mkdir()
    caller = pa.array([b"secret-\xff-value"], pa.binary()).view(pa.string())
    pq.write_table(
        pa.table(
            {
                "TimeGenerated": pa.array(
                    [pd.Timestamp("2026-10-31T10:00:00Z").value], pa.timestamp("ns", tz="UTC")
                ),
                "OperationNameValue": ["Microsoft.Compute/virtualMachines/runCommand/action"],
                "Caller": caller,
            }
        ),
        folder / "bad.parquet",
    )
    with pytest.raises(SourceError) as err:
        sources.read_table(tmp_path, "AzureActivity", START, END, COLS)
    message = str(err.value)
    assert message.startswith("AzureActivity.Caller: invalid UTF-8")
    assert str(folder / "bad.parquet") in message and "secret" not in message


def test_a_corrupt_parquet_file_is_a_source_error_naming_it(tmp_path):
    write_parquet(tmp_path / "AzureActivity" / "part-0.parquet", ROWS)
    (tmp_path / "AzureActivity" / "part-1.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(SourceError) as err:
        sources.read_table(tmp_path, "AzureActivity", START, END, COLS)
    assert str(err.value).startswith("AzureActivity: cannot read Parquet file ")
    assert str(tmp_path / "AzureActivity" / "part-1.parquet") in str(err.value)


# --- Only regular files are read, and never one table from two places ------------------------


def within(seconds, fn, *args):
    """fn(*args) in a thread; (finished, result or exception)."""
    out = {}

    def run():
        try:
            out["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive(), out.get("error", out.get("value"))


def release(fifo):
    """A reader blocked on the FIFO gets end-of-file, so a failed test leaves no thread hanging."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


@pytest.mark.parametrize(
    "name",
    ["AzureActivity.jsonl", "AzureActivity.csv", "AzureActivity/date=2026-10-31/part-1.parquet"],
    ids=["jsonl", "csv", "a-file-in-a-parquet-folder"],
)
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path, name):
    fifo = tmp_path / name
    if name.endswith(".parquet"):
        write_parquet(fifo.with_name("part-0.parquet"), ROWS)
    os.mkfifo(fifo)
    try:
        finished, outcome = within(
            WAIT, sources.read_table, tmp_path, "AzureActivity", START, END, COLS
        )
    finally:
        release(fifo)
    assert finished, "the read blocked on a FIFO"
    assert isinstance(outcome, SourceError), outcome
    assert str(outcome).startswith("AzureActivity: ") and f"{fifo} is a FIFO" in str(outcome)


def test_a_fifo_table_exits_2_from_the_command_line(tmp_path, capsys):
    src = write_jsonl(tmp_path / "s", ACTIVITY, UEBA)
    (src / "AzureActivity.jsonl").unlink()
    os.mkfifo(src / "AzureActivity.jsonl")
    try:
        finished, code = within(
            WAIT,
            cli.main,
            ["detect", "--source", str(src), "--end", END_ARG, "--out", str(tmp_path / "r.jsonl")],
        )
    finally:
        release(src / "AzureActivity.jsonl")
    assert finished and code == 2
    assert "error: AzureActivity: " in capsys.readouterr().err


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda s: (s / "AzureActivity.jsonl").mkdir(), "is a directory, not a regular file"),
        (lambda s: (s / "AzureActivity.csv").mkdir(), "is a directory, not a regular file"),
        (
            lambda s: (s / "AzureActivity").write_text("x"),
            "is a regular file, expected a folder of Parquet files",
        ),
        (lambda s: (s / "AzureActivity.jsonl").symlink_to(s / "nowhere"), "cannot read"),
    ],
    ids=[
        "directory-named-jsonl",
        "directory-named-csv",
        "file-named-like-a-parquet-folder",
        "dangling-symlink",
    ],
)
def test_a_table_that_is_not_a_readable_file_is_a_source_error_naming_it(tmp_path, make, problem):
    make(tmp_path)
    with pytest.raises(SourceError) as err:
        sources.read_table(tmp_path, "AzureActivity", START, END, COLS)
    assert str(err.value).startswith("AzureActivity: ") and problem in str(err.value)
    assert str(tmp_path / "AzureActivity") in str(err.value)


def test_an_unreadable_file_is_a_source_error_naming_it(tmp_path, monkeypatch):
    """Tests run as root, whom chmod 000 does not stop: the kernel's answer is simulated."""
    src = write_jsonl(tmp_path / "s", ACTIVITY, UEBA)
    target, real_open = str(src / "AzureActivity.jsonl"), os.open

    def denying_open(path, *args, **kwargs):
        if os.fspath(path) == target:
            raise PermissionError(13, "Permission denied", target)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denying_open)
    with pytest.raises(SourceError, match=rf"^AzureActivity: cannot open {target}: Permission"):
        sources.read_table(src, "AzureActivity", START, END, COLS)


def test_a_table_in_two_formats_is_a_source_error_naming_both(tmp_path, capsys):
    """Before: the JSONL file silently won (0 results where the Parquet folder held them)."""
    src = write_jsonl(tmp_path / "s", [activity_row(TimeGenerated="2026-10-01T00:00:00Z")], UEBA)
    for row in ACTIVITY:
        write_parquet(
            src / "AzureActivity" / "date=2026-10-31" / f"{row['CorrelationId']}-"
            f"{row['ActivityStatusValue']}.parquet",
            [row],
        )
    code, err = cli_detect(capsys, src, tmp_path / "r.jsonl")
    assert code == 2 and "error: AzureActivity: found in more than one format" in err
    assert str(src / "AzureActivity.jsonl") in err and str(src / "AzureActivity") in err


# --- Text is data: invalid UTF-8 and lone surrogates become U+FFFD, the row is kept -----------


def bad_activity(**over) -> bytes:
    """A complete true-positive Run Command whose CallerIpAddress holds `marker` bytes."""
    rows = run_command(
        "hostile", start="2026-10-31T11:00:00Z", CallerIpAddress="10.6.6.MARK", **over
    )
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


# (table, bytes appended, whether the record is read, the value it is read as or None)
BAD_TEXT = {
    "a-line-of-invalid-bytes-not-json": (
        "AzureActivity",
        b"garbage \xff\xfe not json\n",
        False,
        None,
    ),
    "an-invalid-byte-in-a-string": (
        "AzureActivity",
        bad_activity().replace(b"MARK", b"\xff"),
        True,
        "10.6.6.\ufffd",
    ),
    "a-truncated-utf8-sequence": (
        "AzureActivity",
        bad_activity().replace(b"MARK", b"\xe2\x82"),
        True,
        "10.6.6.\ufffd",
    ),
    "a-lone-surrogate-escape-in-a-string": (
        "AzureActivity",
        bad_activity().replace(b"MARK", b"\\udc80"),
        True,
        "10.6.6.\ufffd",
    ),
    "an-invalid-byte-in-a-dynamic-object": (
        "BehaviorAnalytics",
        json.dumps(
            ueba_row(
                TimeGenerated="2026-10-31T10:45:00Z",
                SourceIPLocation="Spain",
                UsersInsights={"Note": "MARK"},
            )
        )
        .encode()
        .replace(b"MARK", b"\xc3\x28"),
        True,
        None,
    ),
    "a-lone-surrogate-escape-in-a-dynamic-object": (
        "BehaviorAnalytics",
        json.dumps(
            ueba_row(
                TimeGenerated="2026-10-31T10:45:00Z",
                SourceIPLocation="Spain",
                UsersInsights={"Note": "\udc80"},
            )
        ).encode(),
        True,
        None,
    ),
    "a-lone-surrogate-escape-in-dynamic-json-text": (
        "BehaviorAnalytics",
        json.dumps(
            ueba_row(
                TimeGenerated="2026-10-31T10:45:00Z",
                SourceIPLocation="Spain",
                UsersInsights=json.dumps({"Note": "\udc80"}),
            )
        ).encode(),
        True,
        None,
    ),
}


@pytest.mark.parametrize("table, bad, kept, value", BAD_TEXT.values(), ids=BAD_TEXT.keys())
def test_bad_text_beside_valid_rows_keeps_every_result_and_is_listed(
    tmp_path, capsys, table, bad, kept, value
):
    clean = write_jsonl(tmp_path / "clean", ACTIVITY, UEBA)
    src = write_jsonl(tmp_path / "src", ACTIVITY, UEBA)
    with open(src / f"{table}.jsonl", "ab") as fh:
        fh.write(bad if bad.endswith(b"\n") else bad + b"\n")
    assert cli_detect(capsys, clean, tmp_path / "clean.jsonl")[0] == 0
    code, err = cli_detect(capsys, src, tmp_path / "r.jsonl", "--quarantine", str(tmp_path / "q"))
    assert code == 0, err
    expected = results.read(tmp_path / "clean.jsonl")
    got = results.read(tmp_path / "r.jsonl")
    assert all(row in got for row in expected), "a valid result row went missing"
    if value is not None:  # the hostile run command itself is detected, its text repaired
        assert value in {r["CallerIpAddress"] for r in got}
    if table == "BehaviorAnalytics":  # the repaired sign-in still correlates
        assert "Spain" in {r["UEBASourceIPLocation"] for r in got}
    (qfile,) = (tmp_path / "q").glob("*.jsonl")
    listed = [json.loads(line) for line in qfile.read_bytes().decode("utf-8").splitlines()]
    reason = "invalid UTF-8 replaced by U+FFFD (row kept)" if kept else "not JSON"
    assert listed and all(q["reason"].startswith(reason) and q["kept"] is kept for q in listed)
    summary = [line for line in err.splitlines() if line.startswith(f"{table}:")]
    assert (" 0 quarantined" in summary[0]) is kept, "a kept record is not counted as unread"


def test_the_raw_text_of_an_unreadable_line_is_escaped_not_lost(tmp_path):
    src = write_jsonl(tmp_path / "s", ACTIVITY, UEBA)
    with open(src / "AzureActivity.jsonl", "ab") as fh:
        fh.write(b"garbage \xff\xfe not json\n")
    scan = sources.read_table(src, "AzureActivity", START, END, COLS)
    (entry,) = scan.quarantine
    assert entry["raw"] == "garbage \\xff\\xfe not json" and entry["kept"] is False
    assert (scan.quarantined, scan.repaired) == (1, 0)


def test_repaired_rows_count_apart_from_quarantined_ones(tmp_path):
    src = write_jsonl(tmp_path / "s", ACTIVITY, UEBA)
    with open(src / "AzureActivity.jsonl", "ab") as fh:
        fh.write(bad_activity().replace(b"MARK", b"\xff"))
    scan = sources.read_table(src, "AzureActivity", START, END, COLS)
    assert (scan.quarantined, scan.repaired) == (0, 3)
    assert scan.summary()["repaired"] == 3 and scan.summary()["quarantined"] == 0
    assert scan.rows_read == len(ACTIVITY) + 3
    assert [q["line"] for q in scan.quarantine] == [len(ACTIVITY) + i for i in (1, 2, 3)]
    assert all("\\xff" in q["raw"] for q in scan.quarantine)


def test_json_nested_too_deeply_to_parse_is_quarantined_not_a_crash(tmp_path):
    src = write_jsonl(tmp_path / "s", ACTIVITY, UEBA)
    with open(src / "AzureActivity.jsonl", "a") as fh:
        fh.write("[" * 100_000 + "]" * 100_000 + "\n")
    scan = sources.read_table(src, "AzureActivity", START, END, COLS)
    assert [q["reason"] for q in scan.quarantine] == ["not JSON (nested too deeply)"]
    assert scan.rows_in_window == len(ACTIVITY) - 1


def test_the_quarantine_file_is_written_whatever_text_a_record_holds(tmp_path):
    """Defence in depth for any reader: a lone surrogate is written as its JSON escape."""
    record = {
        "table": "AzureActivity",
        "line": 1,
        "reason": "r",
        "raw": "x\udc80y\u00e9",
        "kept": False,
    }
    scan = sources.Scan("AzureActivity", pd.DataFrame(), "s", "jsonl", quarantine=[record])
    path = quarantine.write([scan], tmp_path, END)
    assert json.loads(path.read_bytes().decode("utf-8")) == record


def test_nul_characters_are_string_content_carried_unchanged(tmp_path):
    src = write_jsonl(tmp_path / "s", [activity_row(Caller="a\u0000b@contoso.com")], UEBA)
    scan = sources.read_table(src, "AzureActivity", START, END, COLS)
    assert list(scan.frame["Caller"]) == ["a\x00b@contoso.com"] and scan.quarantine == []


def write_csv(folder, name, rows):
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows).rename(columns={"TimeGenerated": "TimeGenerated [UTC]"})
    frame.to_csv(folder / f"{name}.csv", index=False)
    return folder / f"{name}.csv"


def csv_source(folder):
    write_csv(folder, "AzureActivity", ACTIVITY)
    write_csv(folder, "BehaviorAnalytics", UEBA)
    return folder


def test_invalid_utf8_in_a_csv_export_is_repaired_and_the_row_kept(tmp_path, capsys):
    src = csv_source(tmp_path / "s")
    path = src / "AzureActivity.csv"
    path.write_bytes(path.read_bytes().replace(b"10.0.0.1", b"10.0.0.\xff", 1))
    code, err = cli_detect(capsys, src, tmp_path / "r.jsonl", "--quarantine", str(tmp_path / "q"))
    assert code == 0 and len(results.read(tmp_path / "r.jsonl")) == 2
    assert "AzureActivity: 9 rows read (csv), 8 in window, 0 quarantined" in err
    (qfile,) = (tmp_path / "q").glob("*.jsonl")
    (entry,) = [json.loads(line) for line in qfile.read_text("utf-8").splitlines()]
    assert entry["line"] == 2 and entry["kept"] is True and "10.0.0.\\xff" in entry["raw"]


def test_a_lone_surrogate_escape_in_parquet_dynamic_text_is_repaired_and_listed(tmp_path):
    rows = [ueba_row(UsersInsights=json.dumps({"Note": "\udc80"})), ueba_row()]
    write_parquet(tmp_path / "BehaviorAnalytics" / "part-0.parquet", rows)
    scan = sources.read_table(
        tmp_path, "BehaviorAnalytics", START, END, RULE.inputs["BehaviorAnalytics"]
    )
    assert sorted(scan.frame["UsersInsights"]) == sorted(
        ['{"Note":"\ufffd"}', rows[1]["UsersInsights"]]
    )
    assert (scan.quarantined, scan.repaired) == (0, 1)
    assert scan.quarantine[0]["column"] == "UsersInsights"


# --- A malformed CSV record is quarantined, the others still count ---------------------------


def test_malformed_csv_records_are_quarantined_with_their_line(tmp_path, capsys):
    src = csv_source(tmp_path / "s")
    path = src / "AzureActivity.csv"
    lines = path.read_text().splitlines(keepends=True)
    good = lines[1]
    bad = [
        "too,many," + good,  # line 11: 2 fields too many
        "2026-10-31T10:00:00Z,only,three\n",  # line 12: too few
        '"broken"quote,' + good,
    ]  # line 13: text after a closing quote
    path.write_text("".join(lines + bad))
    code, err = cli_detect(capsys, src, tmp_path / "r.jsonl", "--quarantine", str(tmp_path / "q"))
    assert code == 0 and len(results.read(tmp_path / "r.jsonl")) == 2
    assert "AzureActivity: 12 rows read (csv), 8 in window, 3 quarantined" in err
    (qfile,) = (tmp_path / "q").glob("*.jsonl")
    listed = [json.loads(line) for line in qfile.read_text().splitlines()]
    assert [(q["line"], q["kept"]) for q in listed] == [(11, False), (12, False), (13, False)]
    assert listed[0]["reason"] == "malformed CSV record (9 fields, the header has 7)"
    assert listed[1]["reason"] == "malformed CSV record (3 fields, the header has 7)"
    assert listed[2]["reason"].startswith("malformed CSV record (',' expected after '\"'")


def test_an_unterminated_csv_quote_counts_every_line_it_swallows(tmp_path):
    rows = [activity_row(Authorization="virtualMachines", CorrelationId=f"c{i}") for i in range(6)]
    path = write_csv(tmp_path, "AzureActivity", rows)
    lines = path.read_text().splitlines(keepends=True)
    assert '"' not in "".join(lines), "no quote later in the file closes the broken one"
    path.write_text("".join(lines[:3] + ['"' + lines[3]] + lines[4:]))
    scan = sources.read_table(tmp_path, "AzureActivity", START, END, COLS)
    (entry,) = scan.quarantine
    assert entry["line"] == 4 and entry["count"] == 4 and "lines 4-7" in entry["reason"]
    assert (scan.quarantined, scan.rows_in_window) == (4, 2)
