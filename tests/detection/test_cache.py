"""The scan cache (sources/cache.py, issue #13): a Parquet file is decoded once until it changes,
and every scan served from the cache equals the scan made without it: the frame, the counts and
profile the quality gate judges, the gate's verdict and the rule's rows."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from include.detection import cli, config, pipeline, ranges, results, sources, storage
from include.detection.sources import cache as cache_mod
from include.detection.sources import parquet
from tests.factories import RULE, activity_row, run_command, ueba_row

DAYS = pd.date_range("2026-10-27", "2026-11-02", freq="D", tz="UTC")
NOISE = "Microsoft.Storage/storageAccounts/listKeys/action"
END = pd.Timestamp("2026-11-01T00:00:00Z")
PERIOD = pd.Timedelta(days=2)


def _iso(t) -> str:
    return pd.Timestamp(t).isoformat().replace("+00:00", "Z")


def generated(seed: int = 7):
    """Six days of both tables, seeded: noise, Run Commands, UEBA sign-ins flagged or not in
    every spelling the pushdown must keep or drop, a repaired surrogate escape, and a row
    without a time."""
    rng = np.random.default_rng(seed)
    activity, ueba = [], []
    start = DAYS[0]
    for i, minute in enumerate(sorted(rng.integers(0, 6 * 24 * 60, 900))):
        t = _iso(start + pd.Timedelta(minutes=int(minute), microseconds=int(rng.integers(1e6))))
        if i % 9 == 0:
            activity += run_command(f"corr-{i}", start=t, Caller=f"user{i % 5}@contoso.com")
        else:
            activity.append(
                activity_row(TimeGenerated=t, OperationNameValue=NOISE, CorrelationId=f"noise-{i}")
            )
    flags = [
        '{"ActionUncommonlyPerformedByUser":"True"}',
        '{"ActionUncommonlyPerformedByUser":"true"}',
        '{"ActionUncommonlyPerformedByUser":true}',
        '{"Other":"True"}',
        '{"ActionUncommonlyPerformedByUser":"\\u0054rue","x":"\\udc80"}',
        "not json",
    ]
    for i, minute in enumerate(sorted(rng.integers(0, 6 * 24 * 60, 700))):
        t = _iso(start + pd.Timedelta(minutes=int(minute)))
        ueba.append(
            ueba_row(
                TimeGenerated=t,
                UserPrincipalName=f"user{i % 5}@contoso.com",
                ActivityInsights=flags[i % len(flags)],
                EventSource="Azure AD" if i % 4 else "Device logons",
            )
        )
    activity.append(activity_row(TimeGenerated=None, OperationNameValue=NOISE))
    return activity, ueba


def write_lake(folder, activity, ueba, layout="by-day"):
    """Hive partitions by day, one file each, or ("one-file") each table in one file whose
    pieces span every day; row groups of 200 rows (statistics per group)."""
    for name, rows in (("AzureActivity", activity), ("BehaviorAnalytics", ueba)):
        frame = pd.DataFrame(rows)
        frame["TimeGenerated"] = pd.to_datetime(frame["TimeGenerated"], utc=True, format="ISO8601")
        if layout == "one-file":
            write_part(folder / name / "all.parquet", frame)
            continue
        days = frame["TimeGenerated"].dt.strftime("%Y-%m-%d").fillna("2026-10-30")
        for day in sorted(set(days)):
            write_part(folder / name / f"date={day}" / "part-0.parquet", frame[days == day])
    return folder


def write_part(path, frame, **options):
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    at = table.schema.get_field_index("TimeGenerated")
    table = table.set_column(
        at, "TimeGenerated", table["TimeGenerated"].cast(pa.timestamp("ns", tz="UTC"))
    )
    pq.write_table(table, path, row_group_size=200, **options)


@pytest.fixture
def lake(tmp_path):
    return write_lake(tmp_path / "lake", *generated())


@pytest.fixture
def builds(monkeypatch):
    """How many files the cached scans decode (every decoding goes through _Pieces._build)."""
    calls = []
    real = parquet._Pieces._build

    def counted(con, name, *args):
        calls.append(name)
        return real(con, name, *args)

    monkeypatch.setattr(parquet._Pieces, "_build", staticmethod(counted))
    return calls


def cached(lake, tmp_path):
    return sources.FilesSource(lake, cache=tmp_path / "cache")


def plain(lake):
    return sources.FilesSource(lake, cache=False)


def same_scan(a: sources.Scan, b: sources.Scan) -> None:
    assert a.summary() == b.summary()
    assert a.quarantine == b.quarantine
    pd.testing.assert_frame_equal(a.frame, b.frame)


def scan_both(lake, tmp_path, table, start, end, columns=None):
    columns = columns or RULE.inputs[table]
    got = cached(lake, tmp_path).scan(table, start, end, columns)
    same_scan(got, plain(lake).scan(table, start, end, columns))
    return got


# --- hits and misses --------------------------------------------------------------------------


@pytest.mark.parametrize("table", sources.TABLES)
def test_a_second_scan_decodes_no_file(lake, tmp_path, builds, table):
    first = scan_both(lake, tmp_path, table, END - PERIOD, END)
    # the files whose rows can be in the window (date= folders of the window and a day each
    # side; the footer's times leave out the neighbours, which hold no row of it)
    assert sorted(n.split("/")[-2] for n in builds) == ["date=2026-10-30", "date=2026-10-31"]
    builds.clear()
    again = scan_both(lake, tmp_path, table, END - PERIOD, END)
    assert builds == []
    same_scan(first, again)
    assert first.rows_in_window > 0 and len(first.frame) > 0


def test_the_next_daily_window_decodes_only_the_new_day(lake, tmp_path, builds):
    table = "AzureActivity"
    scan_both(lake, tmp_path, table, END - PERIOD, END)
    builds.clear()
    scan_both(
        lake, tmp_path, table, END - PERIOD + pd.Timedelta(days=1), END + pd.Timedelta(days=1)
    )
    assert [n.split("/")[-2] for n in builds] == ["date=2026-11-01"]


@pytest.mark.parametrize(
    "start, end",
    [
        ("2026-10-30T06:30:00Z", "2026-11-01T00:00:00Z"),
        ("2026-10-30T00:00:00Z", "2026-10-31T23:59:59.9999999Z"),
    ],
    ids=["start-inside-an-hour", "end-inside-an-hour"],
)
def test_a_window_not_on_whole_hours_is_scanned_without_the_cache(
    lake, tmp_path, builds, start, end
):
    scan_both(lake, tmp_path, "BehaviorAnalytics", pd.Timestamp(start), pd.Timestamp(end))
    assert builds == [] and not (tmp_path / "cache").exists()


def test_a_rule_with_other_columns_gets_its_own_pieces(lake, tmp_path, builds):
    table = "AzureActivity"
    narrow = {
        c: k
        for c, k in RULE.inputs[table].items()
        if c in ("TimeGenerated", "OperationNameValue", "Caller")
    }
    scan_both(lake, tmp_path, table, END - PERIOD, END, narrow)
    built = len(builds)
    wide = scan_both(lake, tmp_path, table, END - PERIOD, END)
    assert len(builds) == 2 * built
    assert list(wide.frame.columns) == list(RULE.inputs[table])


# --- files that change, appear, vanish ---------------------------------------------------------


def _day(lake, table="BehaviorAnalytics", day="2026-10-31"):
    return lake / table / f"date={day}" / "part-0.parquet"


def _rewrite(path, change, **options):
    frame = pq.read_table(path).to_pandas()
    write_part(path, change(frame), **options)


def test_a_file_rewritten_in_place_with_the_same_size_is_read_again(lake, tmp_path, builds):
    path = _day(lake)
    _rewrite(path, lambda f: f, compression="none")
    before = scan_both(lake, tmp_path, "BehaviorAnalytics", END - PERIOD, END)
    size, mtime = path.stat().st_size, path.stat().st_mtime_ns
    # one user renamed to a name of the same length: same size, other rows
    _rewrite(
        path,
        lambda f: f.assign(
            UserPrincipalName=f["UserPrincipalName"].str.replace("user1@", "userX@")
        ),
        compression="none",
    )
    os.utime(path, ns=(mtime + 10**9, mtime + 10**9))
    assert path.stat().st_size == size
    builds.clear()
    after = scan_both(lake, tmp_path, "BehaviorAnalytics", END - PERIOD, END)
    assert builds == [str(path)]
    assert "userX@contoso.com" in set(after.frame["UserPrincipalName"])
    assert "userX@contoso.com" not in set(before.frame["UserPrincipalName"])


def test_a_file_rewritten_with_its_old_mtime_but_a_new_size_is_read_again(lake, tmp_path, builds):
    path = _day(lake)
    scan_both(lake, tmp_path, "BehaviorAnalytics", END - PERIOD, END)
    stat = path.stat()
    _rewrite(path, lambda f: f.iloc[: len(f) // 2])
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_mtime_ns == stat.st_mtime_ns and path.stat().st_size != stat.st_size
    builds.clear()
    scan_both(lake, tmp_path, "BehaviorAnalytics", END - PERIOD, END)
    assert builds == [str(path)]


def test_a_touched_file_is_read_again(lake, tmp_path, builds):
    """The modification time is part of the key: a file replaced by a writer that kept its
    footer byte for byte is still read again, never trusted by the footer alone."""
    path = _day(lake)
    scan_both(lake, tmp_path, "BehaviorAnalytics", END - PERIOD, END)
    mtime = path.stat().st_mtime_ns
    os.utime(path, ns=(mtime + 10**9, mtime + 10**9))
    builds.clear()
    scan_both(lake, tmp_path, "BehaviorAnalytics", END - PERIOD, END)
    assert builds == [str(path)]


def test_a_file_added_to_an_old_partition_is_read_and_a_removed_one_is_not(lake, tmp_path, builds):
    table = "AzureActivity"
    before = scan_both(lake, tmp_path, table, END - PERIOD, END)
    late = pd.DataFrame(run_command("late-arrival", start="2026-10-30T12:00:00Z"))
    late["TimeGenerated"] = pd.to_datetime(late["TimeGenerated"], utc=True, format="ISO8601")
    added = _day(lake, table, "2026-10-30").with_name("part-1.parquet")
    write_part(added, late)
    builds.clear()
    after = scan_both(lake, tmp_path, table, END - PERIOD, END)
    assert builds == [str(added)]
    assert after.rows_in_window == before.rows_in_window + 3
    assert "late-arrival" in set(after.frame["CorrelationId"])
    added.unlink()
    builds.clear()
    gone = scan_both(lake, tmp_path, table, END - PERIOD, END)
    assert builds == []
    same_scan(gone, before)


# --- damaged entries, concurrent writers --------------------------------------------------------


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],
        lambda b: b"",
        lambda b: b[:100] + b"\0" * (len(b) - 100),
        lambda b: b"ARROW1\0\0" + b"x" * 50 + b"ARROW1",
    ],
    ids=["truncated", "empty", "zeroed", "garbage"],
)
def test_a_damaged_entry_is_ignored_and_rebuilt(lake, tmp_path, builds, damage):
    table = "BehaviorAnalytics"
    scan_both(lake, tmp_path, table, END - PERIOD, END)
    entries = sorted((tmp_path / "cache").rglob("*.arrow"))
    assert len(entries) == len(builds) == 2
    entries[0].write_bytes(damage(entries[0].read_bytes()))
    builds.clear()
    scan_both(lake, tmp_path, table, END - PERIOD, END)
    assert len(builds) == 1
    builds.clear()
    scan_both(lake, tmp_path, table, END - PERIOD, END)  # the rebuilt entry serves again
    assert builds == []


def test_an_entry_under_another_key_is_not_served(lake, tmp_path, builds):
    """An entry copied over another's name (a bug, a hand edit) holds the wrong rows: its
    recorded key differs from its name, so it is rebuilt."""
    scan_both(lake, tmp_path, "BehaviorAnalytics", END - PERIOD, END)
    a, b = sorted((tmp_path / "cache").rglob("*.arrow"))
    b.write_bytes(a.read_bytes())
    builds.clear()
    scan_both(lake, tmp_path, "BehaviorAnalytics", END - PERIOD, END)
    assert len(builds) == 1


def _fill(lake, cache, rounds, queue):
    try:
        source = sources.FilesSource(lake, cache=cache)
        for _ in range(rounds):
            for table in sources.TABLES:
                for k in range(3):
                    end = END + pd.Timedelta(days=k - 1)
                    source.scan(table, end - PERIOD, end, RULE.inputs[table])
        queue.put("ok")
    except BaseException as exc:  # reported to the test, which fails naming it
        queue.put(f"{type(exc).__name__}: {exc}")


def test_two_processes_filling_the_cache_at_once_leave_it_whole(lake, tmp_path):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    workers = [
        ctx.Process(target=_fill, args=(lake, tmp_path / "cache", 3, queue)) for _ in range(2)
    ]
    for w in workers:
        w.start()
    outcomes = [queue.get(timeout=240) for _ in workers]
    for w in workers:
        w.join(timeout=60)
    assert outcomes == ["ok", "ok"]
    entries = list((tmp_path / "cache").rglob("*"))
    assert not [e for e in entries if e.name.endswith(".tmp")]  # no half-written file left
    for entry in (e for e in entries if e.suffix == ".arrow"):
        assert cache_mod.Cache(tmp_path / "cache").get(entry.stem) is not None, entry
    for table in sources.TABLES:
        for k in range(3):
            end = END + pd.Timedelta(days=k - 1)
            scan_both(lake, tmp_path, table, end - PERIOD, end)


# --- the same results, the same quality numbers ------------------------------------------------


def _rows(frame) -> Counter:
    if frame is None:
        return Counter()
    return Counter(json.dumps(r, sort_keys=True, default=str) for r in results.to_records(frame))


def _facts(detection):
    return {
        t: (q.status, q.profile, q.failures, q.warnings, detection.scans[t].summary())
        for t, q in detection.quality.items()
    }


@pytest.mark.parametrize(
    "seed, layout",
    [(7, "by-day"), (11, "one-file"), (23, "by-day")],
    ids=["seed-7-by-day", "seed-11-one-file", "seed-23-by-day"],
)
def test_detect_is_the_same_with_and_without_the_cache(tmp_path, seed, layout):
    lake = write_lake(tmp_path / "lake", *generated(seed), layout=layout)
    found = 0
    for k in range(5):
        end = pd.Timestamp("2026-10-29T00:00:00Z") + pd.Timedelta(days=k)
        for _ in range(2):  # cold, then served from the cache
            got = pipeline.detect(cached(lake, tmp_path), end, PERIOD, raise_on_failure=False)
            alone = pipeline.detect(plain(lake), end, PERIOD, raise_on_failure=False)
            assert _facts(got) == _facts(alone), end
            assert _rows(got.result) == _rows(alone.result), end
        found += len(got.result) if got.result is not None else 0
    assert found > 0


@pytest.mark.parametrize("warm", [False, True], ids=["cold-cache", "warm-cache"])
def test_a_range_with_the_cache_equals_each_window_detected_alone(lake, tmp_path, builds, warm):
    if warm:
        list(ranges.Hunt(cached(lake, tmp_path), "2026-10-29", "2026-11-02", period=PERIOD))
        builds.clear()
    hunt = ranges.Hunt(cached(lake, tmp_path), "2026-10-29", "2026-11-02", period=PERIOD)
    seen = list(hunt)
    assert len(seen) == 5
    for got in seen:
        alone = pipeline.detect(plain(lake), got.end, PERIOD, raise_on_failure=False)
        assert _facts(got) == _facts(alone), got.end
        assert _rows(got.result) == _rows(alone.result), got.end
    if warm:
        assert builds == []
    else:  # every file decoded once over the whole range, though windows overlap
        assert len(builds) == len(set(builds))


# --- built ahead, side by side, once; kept in memory ---------------------------------------------


@pytest.fixture
def builders(monkeypatch):
    """Which thread decoded each file, and a gate the decoding waits at (set: open)."""
    calls, gate = [], threading.Event()
    gate.set()
    real = parquet._Pieces._build

    def counted(con, name, *args):
        assert gate.wait(60), "the test never opened the gate"
        calls.append((name.split("/")[-3], name.split("/")[-2], threading.current_thread().name))
        return real(con, name, *args)

    monkeypatch.setattr(parquet._Pieces, "_build", staticmethod(counted))
    return SimpleNamespace(calls=calls, gate=gate)


def test_a_daily_detect_builds_each_tables_new_day_on_the_builder_threads(lake, tmp_path, builders):
    """The previous day's run left its pieces; the next run decodes only each table's new day,
    on the builder threads (both side by side), and equals the run without a cache."""
    pipeline.detect(cached(lake, tmp_path), END, PERIOD, raise_on_failure=False)
    builders.calls.clear()
    nxt = END + pd.Timedelta(days=1)
    got = pipeline.detect(cached(lake, tmp_path), nxt, PERIOD, raise_on_failure=False)
    assert sorted(c[:2] for c in builders.calls) == [
        ("AzureActivity", "date=2026-11-01"),
        ("BehaviorAnalytics", "date=2026-11-01"),
    ]
    assert all(c[2].startswith("piece-build") for c in builders.calls)
    alone = pipeline.detect(plain(lake), nxt, PERIOD, raise_on_failure=False)
    assert _facts(got) == _facts(alone) and _rows(got.result) == _rows(alone.result)


def test_a_scan_waits_for_a_piece_being_built_instead_of_decoding_the_file_again(
    lake, tmp_path, builders
):
    """prepare starts the window's pieces and returns at once; two scans asking for them
    while they are being built wait for the same builds: each file is decoded once."""
    table = "BehaviorAnalytics"
    source = cached(lake, tmp_path)
    builders.gate.clear()  # the builds wait here until both scans are asking
    source.prepare(table, END - PERIOD, END, RULE.inputs[table])
    with ThreadPoolExecutor(2) as pool:
        scans = [
            pool.submit(source.scan, table, END - PERIOD, END, RULE.inputs[table]) for _ in range(2)
        ]
        time.sleep(0.3)
        assert not any(s.done() for s in scans)  # waiting for the builds, not building
        builders.gate.set()
        got = [s.result(timeout=60) for s in scans]
    assert sorted(c[1] for c in builders.calls) == ["date=2026-10-30", "date=2026-10-31"]
    expected = plain(lake).scan(table, END - PERIOD, END, RULE.inputs[table])
    for scan in got:
        same_scan(scan, expected)


def test_pieces_are_served_from_memory_within_a_process_and_memory_is_bounded(
    lake, tmp_path, builders, monkeypatch
):
    table = "AzureActivity"
    source = cached(lake, tmp_path)
    first = source.scan(table, END - PERIOD, END, RULE.inputs[table])
    assert len(builders.calls) == 2
    shutil.rmtree(tmp_path / "cache")  # only memory holds the pieces now
    builders.calls.clear()
    same_scan(source.scan(table, END - PERIOD, END, RULE.inputs[table]), first)
    assert builders.calls == []
    # another process (a new Cache) has no memory of them: decoded again
    same_scan(cached(lake, tmp_path).scan(table, END - PERIOD, END, RULE.inputs[table]), first)
    assert len(builders.calls) == 2
    # pieces larger than the memory allowed are read back from their entries, never kept
    monkeypatch.setattr(cache_mod, "MEMORY_BYTES", 1)
    small = cached(lake, tmp_path)
    small.scan(table, END - PERIOD, END, RULE.inputs[table])
    assert small.cache._memory_bytes == 0 and not small.cache._memory


def _scan_in_child(lake, cache, queue):
    try:
        scan = sources.FilesSource(lake, cache=cache).scan(
            "AzureActivity",
            END - PERIOD + pd.Timedelta(days=1),
            END + pd.Timedelta(days=1),
            RULE.inputs["AzureActivity"],
        )
        queue.put(len(scan.frame))
    except BaseException as exc:
        queue.put(f"{type(exc).__name__}: {exc}")


def test_a_forked_child_builds_pieces_on_builder_threads_of_its_own(lake, tmp_path):
    """Airflow and Celery fork their task processes: the parent's builder threads do not exist
    in the child, so work queued to them would wait forever; the child makes its own."""
    cached(lake, tmp_path).scan("AzureActivity", END - PERIOD, END, RULE.inputs["AzureActivity"])
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_scan_in_child, args=(lake, tmp_path / "cache", queue))
    child.start()
    got = queue.get(timeout=120)
    child.join(timeout=60)
    expected = plain(lake).scan(
        "AzureActivity",
        END - PERIOD + pd.Timedelta(days=1),
        END + pd.Timedelta(days=1),
        RULE.inputs["AzureActivity"],
    )
    assert got == len(expected.frame) > 0


# --- turning it off ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, "home"),
        ("", "home"),
        ("off", None),
        ("OFF", None),
        ("0", None),
        ("false", None),
        ("/x/cache", "/x/cache"),
    ],
    ids=["unset", "empty", "off", "OFF", "zero", "false", "a-folder"],
)
def test_detection_cache_setting(monkeypatch, tmp_path, value, expected):
    monkeypatch.setenv("DETECTION_HOME", str(tmp_path))
    if value is None:
        monkeypatch.delenv("DETECTION_CACHE", raising=False)
    else:
        monkeypatch.setenv("DETECTION_CACHE", value)
    want = tmp_path / "cache" if expected == "home" else expected
    assert config.cache() == (None if want is None else type(tmp_path)(want))
    source = sources.open_source(str(tmp_path))
    assert (source.cache is None) == (want is None)


@pytest.mark.parametrize(
    "flags, used", [([], True), (["--no-cache"], False)], ids=["default", "no-cache"]
)
def test_cli_detect_uses_the_cache_unless_told_not_to(lake, tmp_path, monkeypatch, flags, used):
    monkeypatch.setenv("DETECTION_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DETECTION_CACHE", raising=False)
    out = tmp_path / "out.jsonl"
    code = cli.main(
        [
            "detect",
            "--source",
            str(lake),
            "--end",
            "2026-11-01T00:00:00Z",
            "--out",
            str(out),
            *flags,
        ]
    )
    assert code == 0 and out.exists()
    assert (tmp_path / "home" / "cache").exists() == used


def test_a_file_source_with_a_remote_client_is_cached_by_identity(tmp_path, builds):
    """fsspec files (here memory://) are cached too, keyed by what the store reports."""
    import fsspec

    fs = fsspec.filesystem("memory")
    local = write_lake(tmp_path / "lake", *generated())
    for f in local.rglob("*.parquet"):
        fs.pipe(f"/cache-test/{f.relative_to(local).as_posix()}", f.read_bytes())
    try:
        url = "memory://cache-test"
        got = sources.open_source(url, cache=tmp_path / "cache").scan(
            "AzureActivity", END - PERIOD, END, RULE.inputs["AzureActivity"]
        )
        assert len(builds) == 2
        again = sources.open_source(url, cache=tmp_path / "cache").scan(
            "AzureActivity", END - PERIOD, END, RULE.inputs["AzureActivity"]
        )
        assert len(builds) == 2
        same_scan(got, again)
        local_scan = plain(local).scan(
            "AzureActivity", END - PERIOD, END, RULE.inputs["AzureActivity"]
        )
        pd.testing.assert_frame_equal(got.frame, local_scan.frame)
        assert (got.rows_read, got.rows_in_window, got.hourly, got.newest) == (
            local_scan.rows_read,
            local_scan.rows_in_window,
            local_scan.hourly,
            local_scan.newest,
        )
    finally:
        fs.rm("/cache-test", recursive=True)


def test_the_dag_extract_step_uses_the_cache_beside_staging(lake, tmp_path, monkeypatch, builds):
    """pipeline.extract_to_stage (the DAG's extract task) reads through open_source, so the
    cache is on by default, in $DETECTION_HOME/cache beside $DETECTION_HOME/staging, and the
    staged rows and stats are those of an uncached scan."""
    home = tmp_path / "home"
    monkeypatch.setenv("DETECTION_HOME", str(home))
    monkeypatch.delenv("DETECTION_CACHE", raising=False)
    monkeypatch.delenv("DETECTION_STAGING", raising=False)
    staged = []
    for attempt in range(2):
        staged.append(
            pipeline.extract_to_stage(
                str(lake), "BehaviorAnalytics", END - PERIOD, END, config.staging()
            )
        )
        if attempt == 0:
            assert len(builds) == 2
            builds.clear()
    assert builds == []  # the second run decoded nothing
    assert sorted(p.name for p in home.iterdir()) == ["cache", "staging"]
    monkeypatch.setenv("DETECTION_CACHE", "off")
    uncached = pipeline.extract_to_stage(
        str(lake), "BehaviorAnalytics", END - PERIOD, END, tmp_path / "staging-uncached"
    )
    assert pipeline.staged_stats(staged[1]) | {"quarantine_file": None} == pipeline.staged_stats(
        uncached
    ) | {"quarantine_file": None}
    pd.testing.assert_frame_equal(
        pipeline.load_stage(staged[1]["path"]), pipeline.load_stage(uncached["path"])
    )


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f.drop(columns=["UsersInsights"]),
        lambda f: f.assign(SourceIPLocation=7),
    ],
    ids=["a-file-lacks-a-column", "a-file-has-another-type"],
)
def test_a_file_whose_columns_differ_from_the_folders_is_scanned_as_without_a_cache(
    lake, tmp_path, change
):
    """DuckDB reads the folder by the union of its files' columns: a piece of that one file
    alone would not hold what the folder's scan does, so the scan is made uncached (and is the
    same)."""
    _rewrite(_day(lake), change)
    got = scan_both(lake, tmp_path, "BehaviorAnalytics", END - PERIOD, END)
    assert got.rows_in_window > 0


# --- a cache on shared storage (issue #12 point 3: workers share nothing but storage) -----------


@pytest.mark.parametrize("kind", ["memory", "file-url"], ids=["memory://", "file:// URL"])
def test_a_cache_on_storage_urls_serves_the_second_scan_without_decoding(
    lake, tmp_path, builds, monkeypatch, kind
):
    import uuid

    import fsspec

    root = (
        f"memory://cache-{uuid.uuid4().hex}"
        if kind == "memory"
        else (tmp_path / "shared-cache").as_uri()
    )
    monkeypatch.setenv("DETECTION_CACHE", root)
    assert config.cache() == root  # a URL stays a URL, as DETECTION_STAGING does
    try:
        table = "AzureActivity"
        first = sources.FilesSource(lake).scan(table, END - PERIOD, END, RULE.inputs[table])
        assert builds, "the first scan decodes the window's files"
        same_scan(first, plain(lake).scan(table, END - PERIOD, END, RULE.inputs[table]))
        builds.clear()
        again = sources.FilesSource(lake).scan(table, END - PERIOD, END, RULE.inputs[table])
        assert builds == []
        same_scan(first, again)
        stored = storage.walk(root)
        assert stored and all(p.startswith("arrow/") and p.endswith(".arrow") for p in stored)
        # a damaged entry on storage is a miss that is rebuilt, never served
        storage.write_bytes(storage.join(root, stored[0]), b"ARROW1 not an Arrow file")
        builds.clear()
        rebuilt = sources.FilesSource(lake).scan(table, END - PERIOD, END, RULE.inputs[table])
        assert len(builds) == 1
        same_scan(first, rebuilt)
    finally:
        if kind == "memory":
            fsspec.filesystem("memory").rm(root.removeprefix("memory:/"), recursive=True)


# --- what a process remembers of files it has read (identities, folder facts) ---------------------


@pytest.fixture
def remembering(monkeypatch):
    """Every file counts as settled, so identities are remembered from the first scan on (in
    production only files unchanged for 3 s are), and calls that hash a footer are counted."""
    monkeypatch.setattr(cache_mod, "_SETTLED_NS", 0)
    monkeypatch.setattr(cache_mod, "_IDENTITIES", {})
    hashed = []
    real = cache_mod._identity

    def counted(storage, path, *args):
        hashed.append(str(path))
        return real(storage, path, *args)

    monkeypatch.setattr(cache_mod, "_identity", counted)
    return hashed


def test_an_unchanged_files_identity_is_remembered_not_hashed_again(
    lake, tmp_path, builds, remembering
):
    scan_both(lake, tmp_path, "AzureActivity", END - PERIOD, END)
    assert remembering, "the first scan hashes the footers"
    remembering.clear()
    builds.clear()
    scan_both(lake, tmp_path, "AzureActivity", END - PERIOD, END)
    assert remembering == [] and builds == []


def test_a_remembered_file_rewritten_with_its_size_and_mtime_restored_is_read_again(
    lake, tmp_path, builds, remembering
):
    """The remembered stamp holds the inode change time, which no writer sets back: a rewrite
    that restores size and modification time exactly is still seen, never served stale."""
    path = _day(lake)
    _rewrite(path, lambda f: f, compression="none")
    before = scan_both(lake, tmp_path, "BehaviorAnalytics", END - PERIOD, END)
    stat = path.stat()
    _rewrite(
        path,
        lambda f: f.assign(
            UserPrincipalName=f["UserPrincipalName"].str.replace("user1@", "userX@")
        ),
        compression="none",
    )
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    builds.clear()
    after = scan_both(lake, tmp_path, "BehaviorAnalytics", END - PERIOD, END)
    assert builds == [str(path)]
    assert "userX@contoso.com" in set(after.frame["UserPrincipalName"])
    assert "userX@contoso.com" not in set(before.frame["UserPrincipalName"])
