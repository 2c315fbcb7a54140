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

OUTPUT_COLUMNS = [
    "StartTime", "EndTime", "Subscription", "VirtualMachineName", "Caller", "CallerIpAddress",
    "UEBAEventTime", "UEBAActionType", "UEBASourceIPLocation", "UEBAActivityInsights",
    "UEBAUsersInsights", "AccountName", "AccountUPNSuffix",
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


def run_child(cmd: list[str], log: Path, env: dict | None = None, timeout: float | None = None,
              cwd: Path = REPO) -> dict:
    """Run `cmd` to completion; its wall time, CPU time and peak RSS, measured for it alone.

    The command runs under `launch.py` (see there: a child's ru_maxrss would otherwise include
    the harness's own peak), in a new session so a timeout kills the whole tree.
    """
    log = Path(log).resolve()   # the child may run in another folder
    log.parent.mkdir(parents=True, exist_ok=True)
    usage_file = log.with_suffix(".rusage.json")
    usage_file.unlink(missing_ok=True)
    load = os.getloadavg()[0]
    with open(log, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-I", "-S", str(LAUNCHER), str(usage_file), "--", *cmd],
                                stdout=out, stderr=subprocess.STDOUT, env=env or child_env(), cwd=cwd,
                                start_new_session=True)
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
    except (OSError, ValueError):   # killed before the launcher could report
        usage = {"wall_s": outer_wall, "user_s": 0.0, "sys_s": 0.0, "maxrss_kib": 0, "exit_code": proc.returncode}
    return {
        "wall_s": round(usage["wall_s"], 3),
        "cpu_s": round(usage["user_s"] + usage["sys_s"], 3),
        "user_s": round(usage["user_s"], 3),
        "sys_s": round(usage["sys_s"], 3),
        "peak_rss_mib": round(usage["maxrss_kib"] / 1024, 1),   # KiB on Linux
        "exit_code": usage["exit_code"] if not timed_out.is_set() else proc.returncode,
        "timed_out": timed_out.is_set(),
        "loadavg_1m_before": round(load, 2),   # other work on the machine skews wall time
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
    rev = subprocess.run(["git", "rev-parse", "--short", ref], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.strip()
    dest = Path(cache or default_data_dir()) / "code" / rev
    if not (dest / "include" / "detection" / "__init__.py").exists():
        tmp = dest.with_name(f".{rev}.tmp-{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", "--format=tar", rev, "include"], cwd=REPO,
                                 capture_output=True, check=True).stdout
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
        return [py, "-m", "include.detection", "detect", "--source", str(lake), "--end", end,
                "--out", str(out)]
    if engine == "duckdb":
        return [py, "-m", "bench.peer", "--source", str(lake), "--end", end, "--out", str(out)]
    raise ValueError(engine)


# --- comparing results --------------------------------------------------------------------------

def _canonical_json(text):
    if text is None:
        return None
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        value = text          # invalid JSON: a dynamic string (Kusto's parse_json)
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


def compare(ours: Path, peer: Path, sample: int = 5) -> dict:
    a, b = Counter(normalized_rows(ours)), Counter(normalized_rows(peer))
    only_a, only_b = a - b, b - a
    show = lambda c: [dict(zip(OUTPUT_COLUMNS, k), _count=n) for k, n in list(c.items())[:sample]]
    return {"agree": not only_a and not only_b, "rows_ours": sum(a.values()),
            "rows_duckdb": sum(b.values()), "only_ours": sum(only_a.values()),
            "only_duckdb": sum(only_b.values()), "only_ours_sample": show(only_a),
            "only_duckdb_sample": show(only_b)}


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
    "AzureActivity": ("TimeGenerated", "OperationNameValue", "Authorization", "CorrelationId", "Caller",
                      "CallerIpAddress", "ActivityStatusValue"),
    "BehaviorAnalytics": ("TimeGenerated", "EventSource", "ActivityInsights", "ActionType",
                          "UserPrincipalName", "SourceIPLocation", "UsersInsights"),
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
                        start = min(o for o in (col.dictionary_page_offset, col.data_page_offset) if o)
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
                n = fh.readinto(memoryview(buf)[:min(left, len(buf))])
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


def bench_scale(name: str, rows_per_day: int, data_dir: Path, out_dir: Path, repeat: int = 1,
                timeout: float | None = None, warm: bool = True, workers: int = 1,
                compression: str = "zstd", log=print, code: Path | None = None) -> dict:
    from . import lake as lakes

    spec = lakes.LakeSpec(rows_per_day=rows_per_day, compression=compression)
    lake, manifest = lakes.ensure_lake(data_dir, spec, workers=workers, log=log)
    size = lakes.disk_usage(lake)
    end = manifest["end"]
    warmed = warm_page_cache(lake) if warm else {"warmed": False, "bytes": 0}
    work = out_dir / "runs" / name
    work.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict]] = {e: [] for e in ENGINES}
    comparison = None
    for i in range(repeat):
        order = ENGINES if i % 2 == 0 else ENGINES[::-1]   # alternate who goes first
        for engine in order:
            result = work / f"{engine}-{i}.parquet"
            result.unlink(missing_ok=True)
            ours = engine == "ours"
            r = run_child(engine_command(engine, lake, end, result), work / f"{engine}-{i}.log",
                          env=child_env(code=code if ours else None), timeout=timeout,
                          cwd=(code or REPO) if ours else REPO)
            r["repeat"] = i
            runs[engine].append(r)
            log(f"  {name} {engine:6} run {i + 1}/{repeat}: wall {r['wall_s']:.2f}s  cpu {r['cpu_s']:.2f}s  "
                f"peak RSS {r['peak_rss_mib']:,.0f} MiB  exit {r['exit_code']}")
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
    targets = {k: {"max": v, "ratio": ratios[k], "met": ratios[k] <= v}
               for k, v in TARGETS.get(name, {}).items()}
    return {
        "scale": name, "rows_per_day": rows_per_day, "ueba_rows_per_day": spec.ueba_rows_per_day,
        "days": spec.days, "window": {"start": _minus_days(end, 2), "end": end},
        "lake": {"path": str(lake), "bytes_on_disk": size, "gib_on_disk": round(size / 2**30, 3),
                 "rows": manifest["rows"], "bytes_by_table": manifest["bytes"],
                 "generation_seconds": manifest["generation_seconds"],
                 "generated_now": manifest["generated"], "page_cache_warmed": warmed["warmed"],
                 "rule_column_bytes": warmed["bytes"],
                 "compression": spec.compression, "row_group_rows": spec.row_group_rows},
        "ours": summary["ours"], "duckdb": summary["duckdb"], "ratios": ratios, "targets": targets,
        "comparison": comparison or {"agree": False, "error": "an engine failed; see runs"},
        "ours_stderr": _tail(runs["ours"][0]["log"], 8),
        "runs": runs,
    }


def _minus_days(end: str, days: int) -> str:
    from datetime import timedelta
    e = datetime.fromisoformat(end.replace("Z", "+00:00")) - timedelta(days=days)
    return e.isoformat().replace("+00:00", "Z")


# --- the DAG-equivalent ------------------------------------------------------------------------

def bench_dag(name: str, rows_per_day: int, data_dir: Path, out_dir: Path, timeout=None,
              compression: str = "zstd", workers: int = 1, log=print, code: Path | None = None,
              warm: bool = False) -> dict:
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
    r = run_child([sys.executable, "-m", "bench.dag", "--source", str(lake), "--end", manifest["end"],
                   "--work", str(work / "state"), "--timings", str(timings), *(["--warm"] if warm else [])],
                  work / "dag.log", env=child_env(code=code), timeout=timeout, cwd=code or REPO)
    steps = json.loads(timings.read_text()) if timings.exists() else None
    if r["exit_code"] != 0:
        r["log_tail"] = _tail(r["log"], 30)
    if steps:
        docs = steps["steps"]["data_docs (beside the run)"]["seconds"]
        r["to_delivery_s"] = round(steps["through_delivery_seconds"], 3)
        r["data_docs_s"] = docs
    log(f"  {name} dag {mode}: wall {r['wall_s']:.2f}s  to delivery {r.get('to_delivery_s', float('nan')):.2f}s"
        f"  peak RSS {r['peak_rss_mib']:,.0f} MiB  exit {r['exit_code']}")
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
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        rev, dirty = None, None
    return {
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(), "platform": platform.platform(), "python": platform.python_version(),
        "cpus": os.cpu_count(), "mem_total_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "git_rev": rev, "git_dirty": dirty,
        # The working tree may hold uncommitted library changes: this identifies the code measured.
        "ours_code": str(code), "library_sha256": _tree_hash(Path(code) / "include"),
        "versions": {p: version(p) for p in ("duckdb", "pyarrow", "pandas", "numpy", "great-expectations")},
        "measurement": "each engine is a child process, forked by a small launcher (bench/launch.py) "
                       "and reaped with os.wait4: wall = perf_counter from spawn to reap; cpu = "
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


def run_bench(scales: dict[str, int], repeat: int = 1, data_dir: Path | None = None,
              out: Path | None = None, dag: bool = False, dag_scale: str = "M",
              timeout: float | None = None, warm: bool = True, workers: int = 1,
              compression: str = "zstd", log=print, code: Path | None = None,
              airflow: bool = False) -> dict:
    data_dir = Path(data_dir or default_data_dir()).resolve()
    code = Path(code or REPO)
    out = Path(out or REPO / "bench-out" / "report.json").resolve()
    out_dir = out.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"meta": _meta(code), "options": {"repeat": repeat, "data_dir": str(data_dir),
                                           "scales": scales, "compression": compression},
              "scales": {}, "dag": None}
    for name, rows in scales.items():
        log(f"scale {name}: {rows:,} AzureActivity rows/day")
        report["scales"][name] = bench_scale(name, rows, data_dir, out_dir, repeat, timeout, warm,
                                             workers, compression, log, code)
        _write_json(out, report)
    if dag:
        rows = scales.get(dag_scale, SCALES.get(dag_scale))
        if rows is None:
            raise ValueError(f"unknown DAG scale {dag_scale!r}")
        detect = report["scales"].get(dag_scale, {}).get("ours")
        report["dag"] = {}
        for warm in (False, True):
            d = bench_dag(dag_scale, rows, data_dir, out_dir, timeout, compression, workers, log, code,
                          warm=warm)
            if detect and d.get("to_delivery_s"):
                d["vs_detect"] = {"to_delivery": round(d["to_delivery_s"] / detect["wall_s"], 2),
                                  "wall": round(d["wall_s"] / detect["wall_s"], 2),
                                  "peak_rss": round(d["peak_rss_mib"] / detect["peak_rss_mib"], 2)}
                d["target"] = {"max": DAG_TARGET, "met": d["vs_detect"]["to_delivery"] <= DAG_TARGET}
            report["dag"][d["mode"]] = d
    if airflow:
        from .airflow_run import bench_airflow
        rows = scales.get(dag_scale, SCALES.get(dag_scale))
        if rows is None:
            raise ValueError(f"unknown DAG scale {dag_scale!r}")
        a = bench_airflow(dag_scale, rows, data_dir, out_dir, compression, workers, log)
        detect = report["scales"].get(dag_scale, {}).get("ours")
        if detect:
            a["vs_detect"] = {"critical_path": round(a["critical_path_s"] / detect["wall_s"], 2),
                              "run_to_delivery": round(a["run_to_delivery_s"] / detect["wall_s"], 2)}
        report["airflow"] = a
    report["meta"]["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    _write_json(out, report)
    return report


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def format_table(report: dict) -> str:
    head = (f"{'scale':5} {'rows/day':>10} {'lake':>9} {'gen s':>7} | {'engine':6} {'wall s':>8} {'cpu s':>8} "
            f"{'peak MiB':>9} | {'rows':>5} agree")
    lines = [head, "-" * len(head)]
    for name, s in report["scales"].items():
        lake = s["lake"]
        gen = f"{lake['generation_seconds']:.0f}" + ("" if lake["generated_now"] else "*")
        cmp_ = s["comparison"]
        for i, e in enumerate(ENGINES):
            m = s[e]
            prefix = (f"{name:5} {s['rows_per_day']:>10,} {lake['gib_on_disk']:>7.2f}G {gen:>7}" if i == 0
                      else " " * 34)
            rows = cmp_.get("rows_ours" if e == "ours" else "rows_duckdb", "-")
            lines.append(f"{prefix} | {e:6} {m['wall_s']:>8.2f} {m['cpu_s']:>8.2f} {m['peak_rss_mib']:>9,.0f} | "
                         f"{rows:>5} {'yes' if cmp_.get('agree') else 'NO'}")
        r = s["ratios"]
        t = " ".join(f"[{k} target <= {v['max']}x: {'met' if v['met'] else 'NOT met'}]"
                     for k, v in s["targets"].items())
        lines.append(" " * 34 + f" | ours/duckdb wall {r['wall']:.2f}x  cpu {r['cpu']:.2f}x  "
                     f"peak RSS {r['peak_rss']:.2f}x {t}")
    lines.append("(* = lake reused from cache; gen s is its original generation time)")
    for mode, d in (report.get("dag") or {}).items():
        what = ("one process importing everything, as `airflow dags test`" if mode == "cold" else
                "worker preloaded (include.detection.preload), as LocalExecutor with forkserver preload")
        lines.append(f"DAG-equivalent at {d['scale']}, {mode} ({what}):")
        line = (f"    to delivery {d.get('to_delivery_s', float('nan')):.2f}s  + Data Docs beside "
                f"{d.get('data_docs_s', float('nan')):.2f}s  process wall {d['wall_s']:.2f}s  "
                f"peak RSS {d['peak_rss_mib']:,.0f} MiB  exit {d['exit_code']}")
        if d.get("vs_detect"):
            line += (f"  | vs detect: {d['vs_detect']['to_delivery']}x to delivery "
                     f"[target <= {d['target']['max']}x: {'met' if d['target']['met'] else 'NOT met'}]")
        lines.append(line)
        for step, v in (d.get("steps") or {}).get("steps", {}).items():
            lines.append(f"    {step:34} {v['seconds']:>8.2f}s  rss {v.get('rss_mib', 0):>7,.0f} MiB")
    a = report.get("airflow")
    if a:
        vs = a.get("vs_detect") or {}
        lines.append(f"Airflow back-fill at {a['scale']} (scheduler, LocalExecutor, preloaded workers), "
                     f"median of {a.get('repeat', 1)} runs: {a['state']}; critical path {a['critical_path_s']:.2f}s"
                     + (f" ({vs['critical_path']}x detect)" if vs else "")
                     + f", run start to delivered {a['run_to_delivery_s']:.2f}s"
                     + (f" ({vs['run_to_delivery']}x)" if vs else "") + f", whole run {a['run_wall_s']:.2f}s")
        for task, t in sorted(a["tasks"].items(), key=lambda kv: kv[1]["start"] or ""):
            lines.append(f"    {task:34} {t['seconds'] or 0:>8.2f}s  {t['state']}")
    return "\n".join(lines)
