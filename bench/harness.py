"""Run our `detect` and the DuckDB peer side by side, each in its own process tree, and compare.

Each engine runs as a child process in its own session (a timeout kills its whole tree), forked
by a small stdlib-only launcher (`launch.py`) that reaps it with `os.wait4`, which returns that
child's own resource usage: wall time (perf_counter around fork .. reap), CPU time (ru_utime +
ru_stime of the child and its reaped descendants) and peak RSS (ru_maxrss: the largest resident
set of the child or any reaped descendant, not a sum). The launcher is there because a child
forked directly by the harness would inherit the harness's peak RSS in its ru_maxrss (Linux seeds
it at exec from the replaced image). Nothing else runs in the harness meanwhile.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCALES = {"S": 200_000, "M": 2_000_000, "L": 10_000_000}
ENGINES = ("ours", "duckdb")
# Phase-2 targets (ours / duckdb), per scale.
TARGETS = {"M": {"wall": 2.0}, "L": {"wall": 1.25, "peak_rss": 1.5}}
DAG_TARGET = 3.0  # a full DAG run at M within 3x of `detect` alone (issue #5)
# Issue #13: the same wall targets hold where UEBA flags 1 in 8 Azure AD rows (the "flagged"
# scenario beside each scale); a 14-window back-fill in one `detect --from --to` within 0.75x
# the DuckDB query looped over the windows in one process.
BACKFILL = {"rows_per_day": 1_000_000, "days": 15}
BACKFILL_TARGET = {"wall": 0.75}
# The scenarios above measure cold scans: the scan cache (DETECTION_CACHE) is measured apart,
# in bench/cache.py, each from an empty cache folder of its own.
NO_CACHE = {"DETECTION_CACHE": "off"}

OUTPUT_COLUMNS = [
    "StartTime",
    "EndTime",
    "Subscription",
    "VirtualMachineName",
    "Caller",
    "CallerIpAddress",
    "UEBAEventTime",
    "UEBAActionType",
    "UEBASourceIPLocation",
    "UEBAActivityInsights",
    "UEBAUsersInsights",
    "AccountName",
    "AccountUPNSuffix",
]
DATETIME_COLUMNS = ("StartTime", "EndTime", "UEBAEventTime")
DYNAMIC_COLUMNS = ("UEBAActivityInsights", "UEBAUsersInsights")


def default_data_dir() -> Path:
    return Path(os.environ.get("BENCH_DATA") or REPO / ".data" / "bench")


# --- running one child --------------------------------------------------------------------------


def child_env(extra: dict | None = None, code: Path | None = None) -> dict:
    """The environment of a child: `code` (a folder holding `include/`, default the repo) first
    on PYTHONPATH, then the repo (for `bench`)."""
    env = dict(os.environ)
    paths = [str(code or REPO), str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    env.update(extra or {})
    return env


LAUNCHER = Path(__file__).with_name("launch.py")


def run_child(
    cmd: list[str],
    log: Path,
    env: dict | None = None,
    timeout: float | None = None,
    cwd: Path = REPO,
) -> dict:
    """Run `cmd` to completion; its wall time, CPU time and peak RSS, measured for it alone.

    The command runs under `launch.py` (see there: a child's ru_maxrss would otherwise include
    the harness's own peak), in a new session so a timeout kills the whole tree.
    """
    log = Path(log).resolve()  # the child may run in another folder
    log.parent.mkdir(parents=True, exist_ok=True)
    usage_file = log.with_suffix(".rusage.json")
    usage_file.unlink(missing_ok=True)
    load = os.getloadavg()[0]
    with open(log, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(LAUNCHER), str(usage_file), "--", *cmd],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env or child_env(),
            cwd=cwd,
            start_new_session=True,
        )
        timed_out = threading.Event()

        def kill():
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        try:
            proc.wait()
        except KeyboardInterrupt:
            kill()
            raise
        finally:
            if timer:
                timer.cancel()
        outer_wall = time.perf_counter() - t0
    try:
        usage = json.loads(usage_file.read_text())
    except (OSError, ValueError):  # killed before the launcher could report
        usage = {
            "wall_s": outer_wall,
            "user_s": 0.0,
            "sys_s": 0.0,
            "maxrss_kib": 0,
            "exit_code": proc.returncode,
        }
    return {
        "wall_s": round(usage["wall_s"], 3),
        "cpu_s": round(usage["user_s"] + usage["sys_s"], 3),
        "user_s": round(usage["user_s"], 3),
        "sys_s": round(usage["sys_s"], 3),
        "peak_rss_mib": round(usage["maxrss_kib"] / 1024, 1),  # KiB on Linux
        "exit_code": usage["exit_code"] if not timed_out.is_set() else proc.returncode,
        "timed_out": timed_out.is_set(),
        "loadavg_1m_before": round(load, 2),  # other work on the machine skews wall time
        "log": str(log),
    }


def ours_code(ref: str | None = None, path: Path | None = None, cache: Path | None = None) -> Path:
    """Where `ours` runs from: the working tree (default), a folder holding `include/`, or a
    commit's `include/` extracted with `git archive` (read-only for the repository) under the
    lake cache, so a baseline can be measured while the library is being edited."""
    if path:
        return Path(path).resolve()
    if not ref:
        return REPO
    rev = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    dest = Path(cache or default_data_dir()) / "code" / rev
    if not (dest / "include" / "detection" / "__init__.py").exists():
        tmp = dest.with_name(f".{rev}.tmp-{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", "--format=tar", rev, "include"],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
        if dest.exists():
            import shutil

            shutil.rmtree(dest)
        os.replace(tmp, dest)
    return dest


def engine_command(engine: str, lake: Path, end: str, out: Path) -> list[str]:
    py = sys.executable
    lake, out = Path(lake).resolve(), Path(out).resolve()
    if engine == "ours":
        return [
            py,
            "-m",
            "include.detection",
            "detect",
            "--source",
            str(lake),
            "--end",
            end,
            "--out",
            str(out),
        ]
    if engine == "duckdb":
        return [py, "-m", "bench.peer", "--source", str(lake), "--end", end, "--out", str(out)]
    raise ValueError(engine)


def range_command(engine: str, lake: Path, first: str, last: str, out: Path) -> list[str]:
    """One process over every daily window ending first .. last (one file, a WindowEnd column)."""
    py = sys.executable
    lake, out = Path(lake).resolve(), Path(out).resolve()
    if engine == "ours":
        return [
            py,
            "-m",
            "include.detection",
            "detect",
            "--source",
            str(lake),
            "--from",
            first,
            "--to",
            last,
            "--out",
            str(out),
        ]
    if engine == "duckdb":
        return [
            py,
            "-m",
            "bench.peer",
            "--source",
            str(lake),
            "--from",
            first,
            "--to",
            last,
            "--out",
            str(out),
        ]
    raise ValueError(engine)


# --- comparing results --------------------------------------------------------------------------


def _canonical_json(text):
    if text is None:
        return None
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        value = text  # invalid JSON: a dynamic string (Kusto's parse_json)
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def normalized_rows(path: Path) -> list[tuple]:
    """A result file's rows as tuples in OUTPUT_COLUMNS order: datetimes as epoch nanoseconds
    (UTC), dynamic values as canonical JSON, strings as they are (null stays None)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    missing = [c for c in OUTPUT_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: missing output columns {missing}")
    cols = []
    for c in OUTPUT_COLUMNS:
        col = table.column(c)
        if c in DATETIME_COLUMNS:
            if not pa.types.is_timestamp(col.type) or col.type.tz is None:
                raise ValueError(f"{path}: {c} is {col.type}, expected a UTC timestamp")
            cols.append(col.cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64()).to_pylist())
        elif c in DYNAMIC_COLUMNS:
            cols.append([_canonical_json(v) for v in col.to_pylist()])
        else:
            cols.append(col.to_pylist())
    return list(zip(*cols))


def rows_by_window(path: Path) -> dict[str, Counter]:
    """A range file's rows per WindowEnd, normalised as `normalized_rows`."""
    import pyarrow.parquet as pq

    ends = pq.read_table(path, columns=["WindowEnd"]).column("WindowEnd").to_pylist()
    out: dict[str, Counter] = {}
    for end, row in zip(ends, normalized_rows(path)):
        out.setdefault(end, Counter())[row] += 1
    return out


def compare_windows(a: dict[str, Counter], b: dict[str, Counter]) -> dict:
    """Window by window: do both hold the same rows (as multisets)?"""
    ends = sorted(set(a) | set(b))
    differ = [e for e in ends if a.get(e, Counter()) != b.get(e, Counter())]
    return {
        "agree": not differ,
        "windows": len(ends),
        "windows_differ": differ,
        "rows": [sum(a.get(e, Counter()).values()) for e in ends],
        "rows_other": [sum(b.get(e, Counter()).values()) for e in ends],
    }


def compare(ours: Path, peer: Path, sample: int = 5) -> dict:
    a, b = Counter(normalized_rows(ours)), Counter(normalized_rows(peer))
    only_a, only_b = a - b, b - a

    def show(c):
        return [dict(zip(OUTPUT_COLUMNS, k), _count=n) for k, n in list(c.items())[:sample]]

    return {
        "agree": not only_a and not only_b,
        "rows_ours": sum(a.values()),
        "rows_duckdb": sum(b.values()),
        "only_ours": sum(only_a.values()),
        "only_duckdb": sum(only_b.values()),
        "only_ours_sample": show(only_a),
        "only_duckdb_sample": show(only_b),
    }


# --- one scale ----------------------------------------------------------------------------------


def _mem_available() -> int:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# The columns either engine reads (the rule's inputs).
RULE_COLUMNS = {
    "AzureActivity": (
        "TimeGenerated",
        "OperationNameValue",
        "Authorization",
        "CorrelationId",
        "Caller",
        "CallerIpAddress",
        "ActivityStatusValue",
    ),
    "BehaviorAnalytics": (
        "TimeGenerated",
        "EventSource",
        "ActivityInsights",
        "ActionType",
        "UserPrincipalName",
        "SourceIPLocation",
        "UsersInsights",
    ),
}


def warm_page_cache(lake: Path) -> dict:
    """Read, once, the bytes both engines will read (each file's footer and the column chunks of
    the rule's columns), so both start from the same hot page cache; skipped when those bytes do
    not comfortably fit in memory."""
    import pyarrow.parquet as pq

    ranges = []
    for table, columns in RULE_COLUMNS.items():
        for f in sorted((Path(lake) / table).rglob("*.parquet")):
            md = pq.ParquetFile(f).metadata
            size = f.stat().st_size
            ranges.append((f, max(0, size - md.serialized_size - 8), size))
            for g in range(md.num_row_groups):
                rg = md.row_group(g)
                for c in range(rg.num_columns):
                    col = rg.column(c)
                    if col.path_in_schema in columns:
                        start = min(
                            o for o in (col.dictionary_page_offset, col.data_page_offset) if o
                        )
                        ranges.append((f, start, start + col.total_compressed_size))
    total = sum(b - a for _, a, b in ranges)
    if total > 0.6 * _mem_available():
        return {"warmed": False, "bytes": total}
    buf = bytearray(8 << 20)
    for f, a, b in ranges:
        with open(f, "rb", buffering=0) as fh:
            fh.seek(a)
            left = b - a
            while left > 0:
                n = fh.readinto(memoryview(buf)[: min(left, len(buf))])
                if not n:
                    break
                left -= n
    return {"warmed": True, "bytes": total}


def _summary(runs: list[dict]) -> dict:
    ok = [r for r in runs if r["exit_code"] == 0] or runs
    keys = ("wall_s", "cpu_s", "user_s", "sys_s", "peak_rss_mib")
    out = {k: round(statistics.median(r[k] for r in ok), 3) for k in keys}
    out.update({f"min_{k}": min(r[k] for r in ok) for k in ("wall_s", "cpu_s", "peak_rss_mib")})
    out["runs"] = len(runs)
    out["failed_runs"] = sum(r["exit_code"] != 0 for r in runs)
    return out


def _tail(path: str, lines: int = 8) -> list[str]:
    try:
        return Path(path).read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def bench_scale(
    name: str,
    rows_per_day: int,
    data_dir: Path,
    out_dir: Path,
    repeat: int = 1,
    timeout: float | None = None,
    warm: bool = True,
    workers: int = 1,
    compression: str = "zstd",
    log=print,
    code: Path | None = None,
    uncommon_share: float | None = None,
    targets: str | None = None,
) -> dict:
    """One scenario: a lake of `rows_per_day` (UEBA flagging `uncommon_share` of Azure AD
    sign-ins), both engines over its last window; `targets` names the scale whose targets
    apply (default `name`)."""
    from . import lake as lakes

    share = lakes.UNCOMMON_SHARE if uncommon_share is None else uncommon_share
    spec = lakes.LakeSpec(rows_per_day=rows_per_day, compression=compression, uncommon_share=share)
    lake, manifest = lakes.ensure_lake(data_dir, spec, workers=workers, log=log)
    size = lakes.disk_usage(lake)
    end = manifest["end"]
    warmed = warm_page_cache(lake) if warm else {"warmed": False, "bytes": 0}
    work = out_dir / "runs" / name
    work.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict]] = {e: [] for e in ENGINES}
    comparison = None
    for i in range(repeat):
        order = ENGINES if i % 2 == 0 else ENGINES[::-1]  # alternate who goes first
        for engine in order:
            result = work / f"{engine}-{i}.parquet"
            result.unlink(missing_ok=True)
            ours = engine == "ours"
            # our cold single window: no scan cache (bench/cache.py measures it)
            r = run_child(
                engine_command(engine, lake, end, result),
                work / f"{engine}-{i}.log",
                env=child_env(NO_CACHE if ours else None, code=code if ours else None),
                timeout=timeout,
                cwd=(code or REPO) if ours else REPO,
            )
            r["repeat"] = i
            runs[engine].append(r)
            log(
                f"  {name} {engine:6} run {i + 1}/{repeat}: "
                f"wall {r['wall_s']:.2f}s  cpu {r['cpu_s']:.2f}s  "
                f"peak RSS {r['peak_rss_mib']:,.0f} MiB  exit {r['exit_code']}"
            )
            if r["exit_code"] != 0:
                r["log_tail"] = _tail(r["log"], 20)
        if i == 0 and all(runs[e][0]["exit_code"] == 0 for e in ENGINES):
            comparison = compare(work / "ours-0.parquet", work / "duckdb-0.parquet")
    summary = {e: _summary(runs[e]) for e in ENGINES}
    ratios = {
        "wall": round(summary["ours"]["wall_s"] / summary["duckdb"]["wall_s"], 2),
        "cpu": round(summary["ours"]["cpu_s"] / summary["duckdb"]["cpu_s"], 2),
        "peak_rss": round(summary["ours"]["peak_rss_mib"] / summary["duckdb"]["peak_rss_mib"], 2),
    }
    targets = {
        k: {"max": v, "ratio": ratios[k], "met": ratios[k] <= v}
        for k, v in TARGETS.get(targets or name, {}).items()
    }
    return {
        "scale": name,
        "rows_per_day": rows_per_day,
        "ueba_rows_per_day": spec.ueba_rows_per_day,
        "uncommon_share": share,
        "days": spec.days,
        "window": {"start": _minus_days(end, 2), "end": end},
        "lake": {
            "path": str(lake),
            "bytes_on_disk": size,
            "gib_on_disk": round(size / 2**30, 3),
            "rows": manifest["rows"],
            "bytes_by_table": manifest["bytes"],
            "generation_seconds": manifest["generation_seconds"],
            "generated_now": manifest["generated"],
            "page_cache_warmed": warmed["warmed"],
            "rule_column_bytes": warmed["bytes"],
            "compression": spec.compression,
            "row_group_rows": spec.row_group_rows,
        },
        "ours": summary["ours"],
        "duckdb": summary["duckdb"],
        "ratios": ratios,
        "targets": targets,
        "comparison": comparison or {"agree": False, "error": "an engine failed; see runs"},
        "ours_stderr": _tail(runs["ours"][0]["log"], 8),
        "runs": runs,
    }


def _minus_days(end: str, days: int) -> str:
    from datetime import timedelta

    e = datetime.fromisoformat(end.replace("Z", "+00:00")) - timedelta(days=days)
    return e.isoformat().replace("+00:00", "Z")


# --- a back-fill: many consecutive windows --------------------------------------------------------


def _runs_summary(runs: list[dict]) -> dict:
    """Several processes run one after the other as one measurement: their walls and CPU add
    up, the peak RSS is the largest of them."""
    return {
        "wall_s": round(sum(r["wall_s"] for r in runs), 3),
        "cpu_s": round(sum(r["cpu_s"] for r in runs), 3),
        "user_s": round(sum(r["user_s"] for r in runs), 3),
        "sys_s": round(sum(r["sys_s"] for r in runs), 3),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        "exit_code": max((r["exit_code"] for r in runs), key=abs),
        "timed_out": any(r["timed_out"] for r in runs),
        "processes": len(runs),
        "loadavg_1m_before": runs[0]["loadavg_1m_before"],
        "log": runs[0]["log"],
    }


BACKFILL_MODES = ("ours_range", "duckdb_loop", "ours_separate", "duckdb_separate")


def bench_backfill(
    data_dir: Path,
    out_dir: Path,
    rows_per_day: int = BACKFILL["rows_per_day"],
    days: int = BACKFILL["days"],
    uncommon_share: float | None = None,
    repeat: int = 1,
    timeout: float | None = None,
    warm: bool = True,
    workers: int = 1,
    compression: str = "zstd",
    log=print,
    code: Path | None = None,
) -> dict:
    """Every daily 2-day window of a `days`-day lake (days - 1 windows, the first ending after
    two full days): our `detect --from --to` in one process against the DuckDB query looped over
    the windows in one process, and one `detect` per window against one DuckDB process per
    window. The results must agree window by window."""
    from datetime import timedelta

    from . import lake as lakes

    share = lakes.HIGH_UNCOMMON_SHARE if uncommon_share is None else uncommon_share
    spec = lakes.LakeSpec(
        rows_per_day=rows_per_day, days=days, compression=compression, uncommon_share=share
    )
    lake, manifest = lakes.ensure_lake(data_dir, spec, workers=workers, log=log)
    ends = [spec.end - timedelta(days=d) for d in range(days - 2, -1, -1)]
    labels = [e.isoformat().replace("+00:00", "Z") for e in ends]
    warmed = warm_page_cache(lake) if warm else {"warmed": False, "bytes": 0}
    work = out_dir / "runs" / "backfill"
    work.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict]] = {m: [] for m in BACKFILL_MODES}
    env = {"ours": child_env(NO_CACHE, code=code), "duckdb": child_env()}
    cwd = {"ours": code or REPO, "duckdb": REPO}
    for i in range(repeat):
        order = BACKFILL_MODES if i % 2 == 0 else BACKFILL_MODES[::-1]
        for mode in order:
            engine = mode.split("_")[0]
            if mode.endswith(("range", "loop")):
                out = work / f"{mode}-{i}.parquet"
                out.unlink(missing_ok=True)
                r = run_child(
                    range_command(engine, lake, labels[0], labels[-1], out),
                    work / f"{mode}-{i}.log",
                    env=env[engine],
                    timeout=timeout,
                    cwd=cwd[engine],
                )
            else:
                each = []
                for k, label in enumerate(labels):
                    out = work / f"{mode}-{i}-{k:02d}.parquet"
                    out.unlink(missing_ok=True)
                    each.append(
                        run_child(
                            engine_command(engine, lake, label, out),
                            work / f"{mode}-{i}-{k:02d}.log",
                            env=env[engine],
                            timeout=timeout,
                            cwd=cwd[engine],
                        )
                    )
                r = _runs_summary(each)
            r["repeat"] = i
            if r["exit_code"] != 0:
                r["log_tail"] = _tail(r["log"], 20)
            runs[mode].append(r)
            log(
                f"  back-fill {mode:16} run {i + 1}/{repeat}: wall {r['wall_s']:.2f}s  "
                f"cpu {r['cpu_s']:.2f}s  peak RSS {r['peak_rss_mib']:,.0f} MiB  "
                f"exit {r['exit_code']}"
            )
    summary = {m: _summary(runs[m]) for m in BACKFILL_MODES}
    comparison = (
        _compare_backfill(work, labels)
        if all(runs[m][0]["exit_code"] == 0 for m in BACKFILL_MODES)
        else {"agree": False, "error": "a run failed; see runs"}
    )

    def ratio(a, b, key):
        return round(summary[a][key] / summary[b][key], 2)

    ratios = {
        "range_vs_loop": {
            k: ratio("ours_range", "duckdb_loop", k) for k in ("wall_s", "cpu_s", "peak_rss_mib")
        },
        "separate_vs_separate": {
            k: ratio("ours_separate", "duckdb_separate", k)
            for k in ("wall_s", "cpu_s", "peak_rss_mib")
        },
    }
    wall = ratios["range_vs_loop"]["wall_s"]
    return {
        "rows_per_day": rows_per_day,
        "days": days,
        "windows": len(labels),
        "uncommon_share": share,
        "first_end": labels[0],
        "last_end": labels[-1],
        "lake": {
            "path": str(lake),
            "gib_on_disk": round(lakes.disk_usage(lake) / 2**30, 3),
            "rows": manifest["rows"],
            "page_cache_warmed": warmed["warmed"],
        },
        "commands": {
            "ours_range": range_command("ours", lake, labels[0], labels[-1], Path("out.parquet")),
            "duckdb_loop": range_command(
                "duckdb", lake, labels[0], labels[-1], Path("out.parquet")
            ),
        },
        **summary,
        "ratios": ratios,
        "target": {
            "max": BACKFILL_TARGET["wall"],
            "ratio": wall,
            "met": wall <= BACKFILL_TARGET["wall"],
        },
        "comparison": comparison,
        "runs": runs,
    }


def _compare_backfill(work: Path, labels: list[str]) -> dict:
    """Every mode's rows, window by window, against the looped DuckDB query's."""
    loop = rows_by_window(work / "duckdb_loop-0.parquet")
    out = {"range_vs_loop": compare_windows(rows_by_window(work / "ours_range-0.parquet"), loop)}
    for mode in ("ours_separate", "duckdb_separate"):
        each = {
            label: Counter(normalized_rows(work / f"{mode}-0-{k:02d}.parquet"))
            for k, label in enumerate(labels)
        }
        each = {k: v for k, v in each.items() if v}
        out[f"{mode}_vs_loop"] = compare_windows(each, loop)
    out["agree"] = all(v["agree"] for v in out.values() if isinstance(v, dict))
    out["rows_per_window"] = [sum(loop.get(label, Counter()).values()) for label in labels]
    return out


# --- the DAG-equivalent ------------------------------------------------------------------------


def bench_dag(
    name: str,
    rows_per_day: int,
    data_dir: Path,
    out_dir: Path,
    timeout=None,
    compression: str = "zstd",
    workers: int = 1,
    log=print,
    code: Path | None = None,
    warm: bool = False,
) -> dict:
    """One DAG-equivalent run (bench/dag.py). `to_delivery_s` is what the alerts wait for, timed
    in the process from the first task to the end of delivery, in both modes: cold, it includes
    importing the library, pandas, pyarrow and (in validate) GE; warm, those were preloaded, as a
    worker's are once for all its tasks. Interpreter start and exit are left out of both, while
    `detect`'s figure is its whole process, so the ratio slightly favours the DAG."""
    from . import lake as lakes

    spec = lakes.LakeSpec(rows_per_day=rows_per_day, compression=compression)
    lake, manifest = lakes.ensure_lake(data_dir, spec, workers=workers, log=log)
    mode = "warm" if warm else "cold"
    work = out_dir / "runs" / f"{name}-dag-{mode}"
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    timings = work / "steps.json"
    r = run_child(
        [
            sys.executable,
            "-m",
            "bench.dag",
            "--source",
            str(lake),
            "--end",
            manifest["end"],
            "--work",
            str(work / "state"),
            "--timings",
            str(timings),
            *(["--warm"] if warm else []),
        ],
        work / "dag.log",
        env=child_env(NO_CACHE, code=code),
        timeout=timeout,
        cwd=code or REPO,
    )
    steps = json.loads(timings.read_text()) if timings.exists() else None
    if r["exit_code"] != 0:
        r["log_tail"] = _tail(r["log"], 30)
    if steps:
        docs = steps["steps"]["data_docs (beside the run)"]["seconds"]
        r["to_delivery_s"] = round(steps["through_delivery_seconds"], 3)
        r["data_docs_s"] = docs
    log(
        f"  {name} dag {mode}: wall {r['wall_s']:.2f}s"
        f"  to delivery {r.get('to_delivery_s', float('nan')):.2f}s"
        f"  peak RSS {r['peak_rss_mib']:,.0f} MiB  exit {r['exit_code']}"
    )
    return {"scale": name, "rows_per_day": rows_per_day, "mode": mode, **r, "steps": steps}


# --- the whole benchmark -----------------------------------------------------------------------


def _meta(code: Path = REPO) -> dict:
    import importlib.metadata as md

    def version(pkg):
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    try:
        rev = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            or None
        )
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        rev, dirty = None, None
    return {
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "mem_total_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "git_rev": rev,
        "git_dirty": dirty,
        # The working tree may hold uncommitted library changes: this identifies the code measured.
        "ours_code": str(code),
        "library_sha256": _tree_hash(Path(code) / "include"),
        "versions": {
            p: version(p) for p in ("duckdb", "pyarrow", "pandas", "numpy", "great-expectations")
        },
        "measurement": "each engine is a child process, forked by a small launcher "
        "(bench/launch.py) and reaped with os.wait4: wall = perf_counter from spawn to reap; cpu = "
        "ru_utime + ru_stime; peak_rss = ru_maxrss of that child. Engines "
        "alternate order per repeat; the bytes they read (footers, rule columns) are read "
        "once beforehand (hot page cache) when they fit in 60% of available memory.",
    }


def _tree_hash(root: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        if f.is_file() and f.suffix in (".py", ".yaml", ".yml") and "__pycache__" not in f.parts:
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


FLAGGED = "-1in8"  # suffix of a scale's scenario where UEBA flags 1 in 8 Azure AD sign-ins


def run_bench(
    scales: dict[str, int],
    repeat: int = 1,
    data_dir: Path | None = None,
    out: Path | None = None,
    dag: bool = False,
    dag_scale: str = "M",
    timeout: float | None = None,
    warm: bool = True,
    workers: int = 1,
    compression: str = "zstd",
    log=print,
    code: Path | None = None,
    airflow: bool = False,
    flagged: bool = True,
    backfill: bool = False,
    backfill_share: float | None = None,
    cached: bool = True,
) -> dict:
    """Each scale as generated by default (UEBA flags ~0.3 % of sign-ins) and, with `flagged`,
    beside it where UEBA flags 1 in 8 Azure AD sign-ins (scenario `<scale>-1in8`; the wall
    targets hold there too); with `backfill`, the 14-window back-fill (bench_backfill); with
    `cached`, the scan cache's figures beside them (bench/cache.py)."""
    from . import cache as cached_bench
    from .lake import HIGH_UNCOMMON_SHARE

    data_dir = Path(data_dir or default_data_dir()).resolve()
    code = Path(code or REPO)
    out = Path(out or REPO / "bench-out" / "report.json").resolve()
    out_dir = out.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {
        "meta": _meta(code),
        "options": {
            "repeat": repeat,
            "data_dir": str(data_dir),
            "scales": scales,
            "compression": compression,
        },
        "scales": {},
        "dag": None,
    }
    for name, rows in scales.items():
        log(f"scale {name}: {rows:,} AzureActivity rows/day")
        report["scales"][name] = bench_scale(
            name, rows, data_dir, out_dir, repeat, timeout, warm, workers, compression, log, code
        )
        _write_json(out, report)
        if cached:
            log(f"scale {name}: the daily run with the previous day cached")
            report.setdefault("daily_cached", {})[name] = cached_bench.bench_daily_cached(
                name,
                rows,
                data_dir,
                out_dir,
                repeat,
                timeout,
                warm,
                workers,
                compression,
                log,
                code,
            )
            _write_json(out, report)
        if flagged:
            log(f"scale {name}, UEBA flagging 1 in 8 Azure AD sign-ins")
            report["scales"][name + FLAGGED] = bench_scale(
                name + FLAGGED,
                rows,
                data_dir,
                out_dir,
                repeat,
                timeout,
                warm,
                workers,
                compression,
                log,
                code,
                uncommon_share=HIGH_UNCOMMON_SHARE,
                targets=name,
            )
            _write_json(out, report)
    if backfill:
        log(
            f"back-fill: {BACKFILL['days'] - 1} windows over {BACKFILL['days']} days of "
            f"{BACKFILL['rows_per_day']:,} AzureActivity rows/day"
        )
        report["backfill"] = bench_backfill(
            data_dir,
            out_dir,
            uncommon_share=backfill_share,
            repeat=repeat,
            timeout=timeout,
            warm=warm,
            workers=workers,
            compression=compression,
            log=log,
            code=code,
        )
        _write_json(out, report)
        if cached:
            log("back-fill with the scan cache")
            report["backfill"]["cached"] = cached_bench.bench_backfill_cached(
                report["backfill"], out_dir, repeat, timeout, log, code
            )
            _write_json(out, report)
    if dag:
        rows = scales.get(dag_scale, SCALES.get(dag_scale))
        if rows is None:
            raise ValueError(f"unknown DAG scale {dag_scale!r}")
        detect = report["scales"].get(dag_scale, {}).get("ours")
        report["dag"] = {}
        for warm in (False, True):
            d = bench_dag(
                dag_scale,
                rows,
                data_dir,
                out_dir,
                timeout,
                compression,
                workers,
                log,
                code,
                warm=warm,
            )
            if detect and d.get("to_delivery_s"):
                d["vs_detect"] = {
                    "to_delivery": round(d["to_delivery_s"] / detect["wall_s"], 2),
                    "wall": round(d["wall_s"] / detect["wall_s"], 2),
                    "peak_rss": round(d["peak_rss_mib"] / detect["peak_rss_mib"], 2),
                }
                d["target"] = {
                    "max": DAG_TARGET,
                    "met": d["vs_detect"]["to_delivery"] <= DAG_TARGET,
                }
            report["dag"][d["mode"]] = d
    if airflow:
        from .airflow_run import bench_airflow

        rows = scales.get(dag_scale, SCALES.get(dag_scale))
        if rows is None:
            raise ValueError(f"unknown DAG scale {dag_scale!r}")
        a = bench_airflow(dag_scale, rows, data_dir, out_dir, compression, workers, log)
        detect = report["scales"].get(dag_scale, {}).get("ours")
        if detect:
            a["vs_detect"] = {
                "critical_path": round(a["critical_path_s"] / detect["wall_s"], 2),
                "run_to_delivery": round(a["run_to_delivery_s"] / detect["wall_s"], 2),
            }
        report["airflow"] = a
    report["meta"]["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    _write_json(out, report)
    return report


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def format_table(report: dict) -> str:
    head = (
        f"{'scale':7} {'rows/day':>10} {'lake':>9} {'gen s':>7} | "
        f"{'engine':6} {'wall s':>8} {'cpu s':>8} "
        f"{'peak MiB':>9} | {'rows':>5} agree"
    )
    lines = [head, "-" * len(head)]
    for name, s in report["scales"].items():
        lake = s["lake"]
        gen = f"{lake['generation_seconds']:.0f}" + ("" if lake["generated_now"] else "*")
        cmp_ = s["comparison"]
        for i, e in enumerate(ENGINES):
            m = s[e]
            prefix = (
                f"{name:7} {s['rows_per_day']:>10,} {lake['gib_on_disk']:>7.2f}G {gen:>7}"
                if i == 0
                else " " * 36
            )
            rows = cmp_.get("rows_ours" if e == "ours" else "rows_duckdb", "-")
            lines.append(
                f"{prefix} | {e:6} {m['wall_s']:>8.2f} {m['cpu_s']:>8.2f} "
                f"{m['peak_rss_mib']:>9,.0f} | "
                f"{rows:>5} {'yes' if cmp_.get('agree') else 'NO'}"
            )
        r = s["ratios"]
        t = " ".join(
            f"[{k} target <= {v['max']}x: {'met' if v['met'] else 'NOT met'}]"
            for k, v in s["targets"].items()
        )
        lines.append(
            " " * 36 + f" | ours/duckdb wall {r['wall']:.2f}x  cpu {r['cpu']:.2f}x  "
            f"peak RSS {r['peak_rss']:.2f}x {t}"
        )
    lines.append(
        "(* = lake reused from cache; gen s is its original generation time; "
        f"<scale>{FLAGGED}: UEBA flags 1 in 8 Azure AD sign-ins, else ~0.3 %)"
    )
    b = report.get("backfill")
    if b:
        lines.append(
            f"Back-fill: {b['windows']} daily 2-day windows ending {b['first_end']} .. "
            f"{b['last_end']}, {b['rows_per_day']:,} AzureActivity rows/day, UEBA "
            f"flagging {b['uncommon_share']:.3g} of Azure AD sign-ins (medians of "
            f"{b['ours_range']['runs']}):"
        )
        what = {
            "ours_range": "detect --from --to (1 process)",
            "duckdb_loop": "DuckDB query looped (1 process)",
            "ours_separate": f"{b['windows']} x detect --end",
            "duckdb_separate": f"{b['windows']} x DuckDB process",
        }
        for mode, label in what.items():
            m = b[mode]
            lines.append(
                f"    {label:34} wall {m['wall_s']:>7.2f}s  cpu {m['cpu_s']:>7.2f}s  "
                f"peak RSS {m['peak_rss_mib']:>6,.0f} MiB"
            )
        r, t, c = b["ratios"], b["target"], b["comparison"]
        lines.append(
            f"    range/loop wall {r['range_vs_loop']['wall_s']:.2f}x  peak RSS "
            f"{r['range_vs_loop']['peak_rss_mib']:.2f}x [target <= {t['max']}x: "
            f"{'met' if t['met'] else 'NOT met'}]; separate/separate wall "
            f"{r['separate_vs_separate']['wall_s']:.2f}x  peak RSS "
            f"{r['separate_vs_separate']['peak_rss_mib']:.2f}x; results agree window "
            f"by window: {'yes' if c.get('agree') else 'NO'}"
        )
    from .cache import format_cached

    lines.extend(format_cached(report))
    for mode, d in (report.get("dag") or {}).items():
        what = (
            "one process importing everything, as `airflow dags test`"
            if mode == "cold"
            else "worker preloaded (include.detection.preload), "
            "as LocalExecutor with forkserver preload"
        )
        lines.append(f"DAG-equivalent at {d['scale']}, {mode} ({what}):")
        line = (
            f"    to delivery {d.get('to_delivery_s', float('nan')):.2f}s  + Data Docs beside "
            f"{d.get('data_docs_s', float('nan')):.2f}s  process wall {d['wall_s']:.2f}s  "
            f"peak RSS {d['peak_rss_mib']:,.0f} MiB  exit {d['exit_code']}"
        )
        if d.get("vs_detect"):
            line += (
                f"  | vs detect: {d['vs_detect']['to_delivery']}x to delivery "
                f"[target <= {d['target']['max']}x: {'met' if d['target']['met'] else 'NOT met'}]"
            )
        lines.append(line)
        for step, v in (d.get("steps") or {}).get("steps", {}).items():
            lines.append(
                f"    {step:34} {v['seconds']:>8.2f}s  rss {v.get('rss_mib', 0):>7,.0f} MiB"
            )
    a = report.get("airflow")
    if a:
        vs = a.get("vs_detect") or {}
        lines.append(
            f"Airflow back-fill at {a['scale']} (scheduler, LocalExecutor, preloaded workers), "
            f"median of {a.get('repeat', 1)} runs: {a['state']}; "
            f"critical path {a['critical_path_s']:.2f}s"
            + (f" ({vs['critical_path']}x detect)" if vs else "")
            + f", run start to delivered {a['run_to_delivery_s']:.2f}s"
            + (f" ({vs['run_to_delivery']}x)" if vs else "")
            + f", whole run {a['run_wall_s']:.2f}s"
        )
        for task, t in sorted(a["tasks"].items(), key=lambda kv: kv[1]["start"] or ""):
            lines.append(f"    {task:34} {t['seconds'] or 0:>8.2f}s  {t['state']}")
    return "\n".join(lines)
