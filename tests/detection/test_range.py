"""`detect --from --to`: every window of a range in one process equals a `detect` of that window
alone (rows, gate verdict and the facts it judged), while each slice of time is scanned once."""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings

from include.detection import cli, pipeline, ranges, results, sources
from include.detection.errors import UsageError
from tests.factories import activity_row, run_command, ueba_row

NOISE = dict(OperationNameValue="Microsoft.Storage/storageAccounts/listKeys/action")
FIRST, LAST = "2026-10-29T00:00:00Z", "2026-11-02T00:00:00Z"
# AzureActivity has no rows for 10 hours: the windows holding that stretch fail no_gap.
HOLE = ("2026-10-31T02:00:00Z", "2026-10-31T12:00:00Z")


def _iso(t) -> str:
    return pd.Timestamp(t).isoformat().replace("+00:00", "Z")


def _dense(
    make_row, start="2026-10-27T00:07:00Z", end="2026-11-02T06:00:00Z", every="30min", skip=None
):
    times = pd.date_range(start, end, freq=every, inclusive="left")
    if skip:
        times = times[(times < pd.Timestamp(skip[0])) | (times >= pd.Timestamp(skip[1]))]
    return [make_row(TimeGenerated=_iso(t)) for t in times]


def _login(t, **over):
    return ueba_row(TimeGenerated=t, **over)


def tables(hole=True):
    """Six days of both tables: noise every 30 minutes, Run Commands and uncommon sign-ins on
    the slice edges (midnight, 100 ns before it), an execution whose events straddle midnight,
    logins that join windows apart, and traps the rule drops."""
    activity = _dense(lambda **k: activity_row(**NOISE, **k), skip=HOLE if hole else None)
    activity += run_command("edge", start="2026-10-29T00:00:00Z")
    activity += run_command(
        "before-edge", start="2026-10-29T23:59:59.9999999Z", statuses=("Started",)
    )
    activity += run_command(
        "before-edge", start="2026-10-30T00:00:00.0000001Z", statuses=("Succeeded",)
    )
    activity += run_command("straddle", start="2026-10-30T23:59:59Z")
    activity += run_command("late", start="2026-11-01T18:00:00Z", Caller="Bob@contoso.com")
    activity += run_command("failed", start="2026-10-31T15:00:00Z", statuses=("Started", "Failed"))
    ueba = _dense(lambda **k: ueba_row(EventSource="Device logons", **k), every="45min")
    ueba += [
        _login("2026-10-28T23:30:00Z"),
        _login("2026-10-29T00:00:00Z"),
        _login("2026-10-30T22:00:00Z"),
        _login("2026-10-31T05:59:59.9999999Z"),
        _login("2026-11-01T17:00:00Z", UserPrincipalName="bob@CONTOSO.com"),
        _login(
            "2026-11-01T17:30:00Z",
            UserPrincipalName="bob@contoso.com",
            ActivityInsights=json.dumps({"ActionUncommonlyPerformedByUser": "true"}),
        ),
        _login(
            "2026-10-30T23:00:00Z",
            ActivityInsights='{"ActionUncommonlyPerformedByUser":"\\u0054rue"}',
        ),
    ]
    return activity, ueba


BAD_LINES = ["not json\n", json.dumps({"TimeGenerated": None, **NOISE}) + "\n"]


def write_jsonl(folder, activity, ueba):
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("AzureActivity", activity), ("BehaviorAnalytics", ueba)):
        with open(folder / f"{name}.jsonl", "w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
            if name == "AzureActivity":
                fh.writelines(BAD_LINES)
    return folder


def write_lake(folder, activity, ueba):
    """Hive partitions by day; one AzureActivity row without a TimeGenerated (counted from the
    footers, in every scan: it must be quarantined once per window, as a window's own scan)."""
    for name, rows in (("AzureActivity", activity), ("BehaviorAnalytics", ueba)):
        if name == "AzureActivity":
            rows = [*rows, activity_row(**NOISE, TimeGenerated=None)]
        frame = pd.DataFrame(rows)
        frame["TimeGenerated"] = pd.to_datetime(frame["TimeGenerated"], utc=True, format="ISO8601")
        days = frame["TimeGenerated"].dt.strftime("%Y-%m-%d").fillna("2026-10-30")
        for day in sorted(set(days)):
            out = folder / name / f"date={day}"
            out.mkdir(parents=True, exist_ok=True)
            table = pa.Table.from_pandas(frame[days == day], preserve_index=False)
            table = table.set_column(
                table.schema.get_field_index("TimeGenerated"),
                "TimeGenerated",
                table["TimeGenerated"].cast(pa.timestamp("ns", tz="UTC")),
            )
            pq.write_table(table, out / "part-0.parquet")
    return folder


@pytest.fixture(scope="module", params=["parquet", "jsonl"])
def source(request, tmp_path_factory):
    base = tmp_path_factory.mktemp(request.param)
    write = write_lake if request.param == "parquet" else write_jsonl
    return write(base / "src", *tables())


def _rows(frame) -> Counter:
    if frame is None:
        return Counter()
    return Counter(json.dumps(r, sort_keys=True, default=str) for r in results.to_records(frame))


def _facts(detection):
    return {
        t: (q.status, q.profile, q.failures, q.warnings, detection.scans[t].summary())
        for t, q in detection.quality.items()
    }


# --- the range equals its windows ----------------------------------------------------------------


@pytest.mark.parametrize(
    "every, period, failing",
    [
        ("1d", "2d", ["2026-11-01", "2026-11-02"]),
        # a 36-hour window sees the hole's hours once, empty: not yet a rhythm, so not judged
        ("12h", "36h", ["2026-10-31T12", "2026-11-01T12"]),
        ("1d", "36h", []),
        ("2d", "1d", []),
    ],
    ids=[
        "daily-2-day-windows",
        "twice-a-day-36h-windows",
        "daily-36h-windows-in-12h-slices",
        "windows-with-gaps-between",
    ],
)
def test_every_window_equals_its_own_detect(source, every, period, failing):
    from include.detection.rule import parse_timespan

    every, period = parse_timespan(every), parse_timespan(period)
    hunt = ranges.Hunt(source, FIRST, LAST, every, period)
    seen = list(hunt)
    assert [d.end for d in seen] == hunt.ends and hunt.ends[-1] <= pd.Timestamp(LAST)
    for got in seen:
        alone = pipeline.detect(source, got.end, period, raise_on_failure=False, engine="native")
        assert (got.start, got.end) == (alone.start, alone.end)
        assert _facts(got) == _facts(alone), got.end
        assert _rows(got.result) == _rows(alone.result), got.end
    assert [d.end for d in seen if d.failures] == [pd.Timestamp(f, tz="UTC") for f in failing]
    assert sum(len(d.result) for d in seen if d.result is not None) > 0


def test_each_slice_is_scanned_once_and_only_the_current_window_is_held(tmp_path):
    """14 daily 2-day windows: 15 one-day scans per table, not 28 two-day ones."""
    src = write_lake(tmp_path / "src", *tables(hole=False))
    inner = sources.open_source(src)
    spans, held = [], []

    class Counting:
        name = inner.name
        url = inner.url

        def scan(self, table, start, end, columns, prefilter=True):
            spans.append((table, pd.Timestamp(start), pd.Timestamp(end)))
            return inner.scan(table, start, end, columns, prefilter)

    hunt = ranges.Hunt(Counting(), "2026-10-19", "2026-11-01")
    for _ in hunt:
        held.append(max(len(t.slices) for t in hunt.tables.values()))
    assert len(hunt) == 14
    for table in sources.TABLES:
        mine = sorted((s, e) for t, s, e in spans if t == table)
        assert len(mine) == 15 and len(set(mine)) == 15
        assert all(e - s == pd.Timedelta(days=1) for s, e in mine)
    assert max(held) == 2


def test_whole_file_tables_are_read_once_per_chunk_of_windows(tmp_path):
    src = write_jsonl(tmp_path / "src", *tables(hole=False))
    inner = sources.open_source(src)
    calls = []

    class Counting:
        name = inner.name
        url = inner.url

        def scan(self, table, start, end, columns, prefilter=True):
            calls.append((table, prefilter))
            return inner.scan(table, start, end, columns, prefilter)

    hunt = ranges.Hunt(Counting(), "2026-10-19", "2026-11-10")  # 23 windows: 2 chunks
    assert len(list(hunt)) == 23
    for table in sources.TABLES:  # the first slice, then a whole read per chunk of 14
        assert [p for t, p in calls if t == table] == [True, False, False]


# --- the command line ---------------------------------------------------------------------------


def test_cli_range_writes_every_window_and_names_the_failed_ones(source, tmp_path, capsys):
    out = tmp_path / "range.jsonl"
    code = cli.main(
        [
            "detect",
            "--source",
            str(source),
            "--from",
            FIRST,
            "--to",
            LAST,
            "--out",
            str(out),
            "--quarantine",
            str(tmp_path / "q"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 3, err
    rows = results.read(out) if out.stat().st_size else []
    by_window = Counter(r["WindowEnd"] for r in rows)
    assert all(list(r)[0] == "WindowEnd" and len(r) == 14 for r in rows)
    failed = 0
    for end in pd.date_range(FIRST, LAST, freq="1d"):
        one = tmp_path / f"one-{end:%d}.jsonl"
        alone = cli.main(
            [
                "detect",
                "--source",
                str(source),
                "--end",
                _iso(end),
                "--out",
                str(one),
                "--quarantine",
                str(tmp_path / "q1"),
            ]
        )
        alone_err = capsys.readouterr().err
        mine = [
            {k: v for k, v in r.items() if k != "WindowEnd"}
            for r in rows
            if r["WindowEnd"] == _iso(end)
        ]
        if alone == 3:
            failed += 1
            message = alone_err.split("error: ", 1)[1].strip()
            assert f"window ending {end.isoformat()}: {message}" in err
            assert not mine
        else:
            assert alone == 0
            assert Counter(map(json.dumps, mine)) == Counter(map(json.dumps, results.read(one)))
            assert by_window[_iso(end)] == len(mine)
    assert failed == 2 and f"2 failed the gate; results: {len(rows)} rows" in err
    assert "data-quality gate failed in 2 of 5 windows" in err
    quarantined = [
        json.loads(line)
        for f in (tmp_path / "q").glob("*.jsonl")
        for line in f.read_text().splitlines()
    ]
    assert quarantined and len({json.dumps(q, sort_keys=True) for q in quarantined}) == len(
        quarantined
    ), "every quarantined record listed once for the whole range"


def test_cli_range_parquet_has_a_leading_window_end(tmp_path, capsys):
    src = write_lake(tmp_path / "src", *tables(hole=False))
    out = tmp_path / "r.parquet"
    assert (
        cli.main(["detect", "--source", str(src), "--from", FIRST, "--to", LAST, "--out", str(out)])
        == 0
    )
    table = pq.read_table(out)
    assert table.column_names == ranges.COLUMNS
    assert str(table.schema.field("StartTime").type) == "timestamp[ns, tz=UTC]"
    assert set(table.column("WindowEnd").to_pylist()) <= {
        _iso(t) for t in pd.date_range(FIRST, LAST, freq="1d")
    }
    assert table.num_rows == len(results.read(out)) > 0


@pytest.mark.parametrize("tty", [True, False], ids=["progress-on-a-terminal", "none-in-a-log"])
def test_cli_range_shows_progress_only_on_a_terminal(tmp_path, capsys, monkeypatch, tty):
    src = write_jsonl(tmp_path / "src", *tables(hole=False))
    monkeypatch.setattr(cli.sys.stderr, "isatty", lambda: tty, raising=False)
    assert (
        cli.main(
            [
                "detect",
                "--source",
                str(src),
                "--from",
                FIRST,
                "--to",
                LAST,
                "--out",
                str(tmp_path / "r.jsonl"),
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert ("[5/5] window ending 2026-11-02T00:00:00+00:00" in err) is tty
    assert (
        "windows: 5 ending 2026-10-29T00:00:00+00:00 .. 2026-11-02T00:00:00+00:00 every 1d" in err
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--from", FIRST], "needs --from and --to"),
        (["--from", FIRST, "--to", LAST, "--end", LAST], "needs --from and --to (and no --end)"),
        (["--from", LAST, "--to", FIRST], "is before --from"),
        (["--from", FIRST, "--to", LAST, "--every", "1ms"], "more than 10000"),
        (["--from", FIRST, "--to", LAST, "--every", "0d"], "must be positive"),
        (["--from", "yesterday", "--to", LAST], "not a timestamp"),
        (["--end", LAST, "--every", "1d"], "--every goes with --from/--to"),
        ([], "needs --end"),
    ],
    ids=[
        "from-without-to",
        "range-and-end",
        "upside-down",
        "too-fine",
        "zero-every",
        "bad-from",
        "every-without-range",
        "nothing",
    ],
)
def test_range_usage_errors_exit_2(tmp_path, capsys, args, message):
    src = write_jsonl(tmp_path / "src", *tables(hole=False))
    code = cli.main(["detect", "--source", str(src), "--out", str(tmp_path / "o.jsonl"), *args])
    assert code == 2
    assert message in capsys.readouterr().err


# --- pieces ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "period, every, expected",
    [("2d", "1d", "1d"), ("36h", "1d", "12h"), ("1d", "2d", "1d"), ("90m", "1h", "30m")],
    ids=["daily", "36h-daily", "gaps", "minutes"],
)
def test_slices_fall_on_every_window_start_and_end(period, every, expected):
    from include.detection.rule import parse_timespan as ts

    assert ranges.slice_length(ts(period), ts(every)) == pd.Timedelta(ts(expected))


def test_window_ends_include_the_last_one():
    ends = ranges.window_ends(
        "2026-10-29", "2026-10-31T12:00:00Z", pd.Timedelta("12h"), pd.Timedelta("2d")
    )
    assert [_iso(e) for e in ends] == [
        "2026-10-29T00:00:00Z",
        "2026-10-29T12:00:00Z",
        "2026-10-30T00:00:00Z",
        "2026-10-30T12:00:00Z",
        "2026-10-31T00:00:00Z",
        "2026-10-31T12:00:00Z",
    ]
    with pytest.raises(UsageError):
        ranges.window_ends("2026-10-29", "2026-10-28", pd.Timedelta("1d"), pd.Timedelta("2d"))


def test_quarantine_of_slices_counts_source_wide_records_once_and_repairs_per_slice():
    null_times = {
        "table": "T",
        "source": "s",
        "line": None,
        "reason": "null TimeGenerated",
        "raw": None,
        "count": 3,
        "kept": False,
    }
    line = {"table": "T", "source": "s", "line": 7, "reason": "not JSON", "raw": "x", "kept": False}
    repaired = {
        "table": "T",
        "source": "s",
        "line": None,
        "column": "C",
        "reason": "fixed",
        "raw": None,
        "count": 2,
        "kept": True,
    }

    def scan(*records):
        return sources.Scan("T", pd.DataFrame(), "s", "parquet", quarantine=list(records))

    merged = ranges.merge_quarantine(
        [scan(null_times, line, repaired), scan(null_times, line, repaired)]
    )
    assert merged == [null_times, line, {**repaired, "count": 4}]
    assert repaired["count"] == 2, "the slices' own records are not changed"


# --- the range against the KQL oracle -------------------------------------------------------------

from tests.oracle import as_counter, describe_diff, kql_oracle, normalize_ours  # noqa: E402
from tests.test_differential import T0, scenarios  # noqa: E402
from tests.test_differential_cli import _lake  # noqa: E402

# 6-hour steps of 1-day windows cut through the generated executions (T0 - 2h .. T0 + 7h).
RANGE = [T0 + pd.Timedelta(hours=h) for h in (-6, 0, 6, 12, 18)]


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(scenarios())
def test_range_equals_the_kql_oracle_window_by_window(tmp_path_factory, tables):
    base = tmp_path_factory.mktemp("range")
    _lake(tables[0], base / "lake" / "AzureActivity")
    _lake(tables[1], base / "lake" / "BehaviorAnalytics")
    out = base / "r.parquet"
    code = cli.main(
        [
            "detect",
            "--source",
            str(base / "lake"),
            "--from",
            _iso(RANGE[0]),
            "--to",
            _iso(RANGE[-1]),
            "--every",
            "6h",
            "--period",
            "1d",
            "--out",
            str(out),
        ]
    )
    written = results.load(out) if out.exists() else None
    assert written is not None
    any_empty = False
    for end in RANGE:
        start = end - pd.Timedelta(days=1)
        in_window = [t[(t["TimeGenerated"] >= start) & (t["TimeGenerated"] < end)] for t in tables]
        mine = written[written["WindowEnd"] == _iso(end)].drop(columns="WindowEnd")
        if any(t.empty for t in in_window):  # no rows is "no data": the window fails, no rows
            any_empty = True
            assert mine.empty
            continue
        ours, oracle = normalize_ours(mine.reset_index(drop=True)), kql_oracle(*in_window)
        assert as_counter(ours) == as_counter(oracle), f"{end}\n" + describe_diff(ours, oracle)
    assert code == (3 if any_empty else 0)
