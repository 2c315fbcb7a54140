"""Where our `detect` spends its time and memory, and what the alternatives cost.

    python -m bench.profile --source LAKE --end TS --out DIR [--skip-cprofile] [--skip-experiments]

Writes to DIR (and returns as a dict, for `python -m bench --profile`):

* importtime: `python -X importtime -m include.detection detect ...`; cumulative import time of
  the top-level packages (pandas, pyarrow, great_expectations, ...);
* steps: the detect pipeline re-run in one process with a timer per step (imports, GE prefetch,
  extract per table, validate per table, correlate, write): wall, CPU, RSS after, peak RSS;
* cprofile: `python -m cProfile -m include.detection detect ...`; top functions by cumulative and
  own time, and own time bucketed by package;
* experiments: each in its own process (wall, CPU, peak RSS), the scans the library could do
  instead: pyarrow with the window only / plus the operation filter / two-phase (narrow columns
  first, wide columns only for candidate row groups), DuckDB with the filters pushed, the hourly
  profile from DuckDB, and bare imports.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
import time
from pathlib import Path

from . import harness
from .dag import Steps

RULE_COLUMNS = {
    "AzureActivity": ["TimeGenerated", "OperationNameValue", "Authorization", "CorrelationId", "Caller",
                      "CallerIpAddress", "ActivityStatusValue"],
    "BehaviorAnalytics": ["TimeGenerated", "EventSource", "ActivityInsights", "ActionType",
                          "UserPrincipalName", "SourceIPLocation", "UsersInsights"],
}
RUN_COMMAND = "microsoft.compute/virtualmachines/runcommand/action"


# --- helpers ------------------------------------------------------------------------------------



def _window(end: str):
    from datetime import datetime, timedelta, timezone
    e = datetime.fromisoformat(end.replace("Z", "+00:00")).astimezone(timezone.utc)
    return e - timedelta(days=2), e


def _detect_cmd(lake: Path, end: str, out: Path) -> list[str]:
    return harness.engine_command("ours", lake, end, out)


# --- 1. import time -----------------------------------------------------------------------------

def _at(code):
    code = Path(code or harness.REPO)
    return {"env": harness.child_env(code=code), "cwd": code}


def importtime(lake: Path, end: str, out_dir: Path, code=None) -> dict:
    log = out_dir / "importtime.log"
    cmd = [sys.executable, "-X", "importtime"] + _detect_cmd(lake, end, out_dir / "importtime-result.parquet")[1:]
    run = harness.run_child(cmd, log, **_at(code))
    tops: dict[str, float] = {}
    total = 0.0
    for line in log.read_text(errors="replace").splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if not m:
            continue
        depth = len(m.group(3))
        if depth == 1:   # imported by __main__ code directly (or lazily, first time)
            pkg = m.group(4).split(".")[0]
            tops[pkg] = tops.get(pkg, 0.0) + int(m.group(2)) / 1e6
            total += int(m.group(2)) / 1e6
    top = dict(sorted(((k, round(v, 3)) for k, v in tops.items()), key=lambda kv: -kv[1])[:12])
    return {"run": run, "total_import_seconds": round(total, 3), "top_packages_seconds": top}


# --- 2. steps in one process --------------------------------------------------------------------

def steps_main(lake: Path, end: str, out: Path) -> None:
    """Runs in a child process: the detect pipeline, step by step, timed."""
    steps = Steps(quiet=True)
    timer = steps.run
    timer("import pandas", __import__, "pandas")
    timer("import pyarrow.dataset", __import__, "pyarrow.dataset")
    timer("import include.detection", __import__, "include.detection.pipeline")
    from include.detection import correlation, pipeline, quality, results, sources
    from include.detection.rule import load_rule

    rule = load_rule("runcommand_ueba_breach")
    start, end_ = pipeline.window(end, rule.query_period)
    if hasattr(quality, "prefetch"):
        timer("quality.prefetch (GE import)", quality.prefetch)
    else:
        timer("import great_expectations", __import__, "great_expectations")
    scans = {t: timer(f"extract {t}", pipeline.extract, lake, t, start, end_, rule) for t in sources.TABLES}
    params = inspect.signature(pipeline.validate).parameters
    kw = {"raise_on_failure": False} if "raise_on_failure" in params else {}
    for t, s in scans.items():
        timer(f"validate {t} ({len(s.frame):,} rows)", pipeline.validate, s, start, end_, rule, **kw)
    result = timer("correlate", correlation.correlate, scans["AzureActivity"].frame,
                   scans["BehaviorAnalytics"].frame)
    timer("write result", results.write, result, out.with_suffix(".parquet"))
    report = {"steps": steps.steps, "results": len(result),
              "frames": {t: {"rows": len(s.frame), "mib": round(s.frame.memory_usage(deep=True).sum() / 2**20, 1)}
                         for t, s in scans.items()},
              "summaries": {t: {k: v for k, v in s.summary().items() if k not in ("hourly",)}
                            for t, s in scans.items()}}
    out.write_text(json.dumps(report, indent=2, default=str))


def steps(lake: Path, end: str, out_dir: Path, code=None) -> dict:
    out = out_dir / "steps.json"
    run = harness.run_child([sys.executable, "-m", "bench.profile", "--steps-child", "--source", str(lake),
                             "--end", end, "--out", str(out)], out_dir / "steps.log", **_at(code))
    data = json.loads(out.read_text()) if out.exists() else {"error": harness._tail(run["log"], 20)}
    return {"run": run, **data}


# --- 3. cProfile ----------------------------------------------------------------------------------

BUCKETS = (("great_expectations", "great_expectations"), ("pyarrow", "pyarrow"), ("pandas", "pandas"),
           ("numpy", "numpy"), ("include/detection/", "include.detection"), ("json", "json"),
           ("duckdb", "duckdb"), ("sqlalchemy", "sqlalchemy"), ("importlib", "import machinery"),
           ("<frozen", "import machinery"))


def cprofile(lake: Path, end: str, out_dir: Path, top: int = 35, code=None) -> dict:
    import io
    import pstats

    prof = out_dir / "detect.prof"
    cmd = [sys.executable, "-m", "cProfile", "-o", str(prof)] + \
        _detect_cmd(lake, end, out_dir / "cprofile-result.parquet")[1:]
    run = harness.run_child(cmd, out_dir / "cprofile.log", **_at(code))
    if not prof.exists():
        return {"run": run, "error": harness._tail(run["log"], 20)}
    stats = pstats.Stats(str(prof))
    buf = io.StringIO()
    stats.stream = buf
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    (out_dir / "cprofile.txt").write_text(buf.getvalue())
    buckets: dict[str, float] = {}
    interesting = {}
    keys = ("to_table", "to_pandas", "count_rows", "read_table", "_read_parquet", "validate", "correlate",
            "run_commands", "uncommon_logins", "write", "prefetch", "_typed", "_ticks", "_hourly",
            "summarize_by_correlation", "has_term", "where_azure_ad_uncommon_action", "detect", "main")
    for (file, line, func), (cc, nc, tt, ct, callers) in stats.stats.items():
        name = next((b for pat, b in BUCKETS if pat in file), "other")
        buckets[name] = buckets.get(name, 0.0) + tt
        if func in keys and ("include/detection" in file or "pyarrow" in file):
            label = f"{Path(file).parent.name}/{Path(file).name}:{func}"
            interesting[label] = max(interesting.get(label, 0.0), round(ct, 3))
    return {"run": run, "own_time_by_package": {k: round(v, 3) for k, v in
                                                 sorted(buckets.items(), key=lambda kv: -kv[1])},
            "cumulative_seconds": dict(sorted(interesting.items(), key=lambda kv: -kv[1])),
            "text": str(out_dir / "cprofile.txt")}


# --- 4. experiments ---------------------------------------------------------------------------------

def _pa_dataset(lake: Path, table: str):
    import pyarrow.dataset as ds
    return ds.dataset(Path(lake) / table, format="parquet", partitioning="hive",
                      ignore_prefixes=[".", "_"])


def _pa_window(end: str):
    import pyarrow as pa
    import pyarrow.compute as pc
    start, end_ = _window(end)
    t = pa.timestamp("ns", tz="UTC")
    return (pc.field("TimeGenerated") >= pa.scalar(start, t)) & (pc.field("TimeGenerated") < pa.scalar(end_, t))


def exp_pyarrow_window(lake, end):
    """pyarrow: the rule's 7 columns, window filter only, then to_pandas (the original scan)."""
    out = {}
    for table, cols in RULE_COLUMNS.items():
        t0 = time.perf_counter()
        tbl = _pa_dataset(lake, table).to_table(columns=cols, filter=_pa_window(end))
        t1 = time.perf_counter()
        df = tbl.to_pandas()
        out[table] = {"rows": tbl.num_rows, "scan_s": round(t1 - t0, 3),
                      "to_pandas_s": round(time.perf_counter() - t1, 3),
                      "arrow_mib": round(tbl.nbytes / 2**20, 1),
                      "pandas_mib": round(df.memory_usage(deep=True).sum() / 2**20, 1)}
    return out


def exp_pyarrow_times_only(lake, end):
    """pyarrow: TimeGenerated only, window filter (the profile / hourly counts)."""
    out = {}
    for table in RULE_COLUMNS:
        t0 = time.perf_counter()
        tbl = _pa_dataset(lake, table).to_table(columns=["TimeGenerated"], filter=_pa_window(end))
        out[table] = {"rows": tbl.num_rows, "scan_s": round(time.perf_counter() - t0, 3)}
    return out


def exp_pyarrow_pushdown(lake, end):
    """pyarrow: the rule's columns, window AND the first `where` in the scan filter."""
    import pyarrow.compute as pc
    keep = {"AzureActivity": pc.ascii_lower(pc.field("OperationNameValue")) == RUN_COMMAND,
            "BehaviorAnalytics": pc.field("EventSource") == "Azure AD"}
    out = {}
    for table, cols in RULE_COLUMNS.items():
        t0 = time.perf_counter()
        tbl = _pa_dataset(lake, table).to_table(columns=cols, filter=_pa_window(end) & keep[table])
        out[table] = {"rows": tbl.num_rows, "scan_s": round(time.perf_counter() - t0, 3),
                      "arrow_mib": round(tbl.nbytes / 2**20, 1)}
    return out


def exp_pyarrow_pushdown_cast(lake, end):
    """pyarrow: as pyarrow_pushdown, but with the window written as the library writes it
    (TimeGenerated cast to timestamp[ns, UTC] in the expression, a `date` partition range with a
    day of slack): does the cast keep row-group statistics from pruning the day before?"""
    import pyarrow as pa
    import pyarrow.compute as pc
    start, end_ = _window(end)
    t = pa.timestamp("ns", tz="UTC")
    tg = pc.field("TimeGenerated").cast(t)
    lo_day = (start.date().toordinal() - 1)
    from datetime import date
    window = ((tg >= pa.scalar(start, t)) & (tg < pa.scalar(end_, t))
              & (pc.field("date") >= date.fromordinal(lo_day).isoformat())
              & (pc.field("date") <= date.fromordinal(end_.date().toordinal() + 1).isoformat()))
    keep = {"AzureActivity": pc.ascii_lower(pc.field("OperationNameValue")) == RUN_COMMAND,
            "BehaviorAnalytics": pc.field("EventSource") == "Azure AD"}
    out = {}
    for table, cols in RULE_COLUMNS.items():
        t0 = time.perf_counter()
        tbl = _pa_dataset(lake, table).to_table(columns=cols, filter=window & keep[table])
        out[table] = {"rows": tbl.num_rows, "scan_s": round(time.perf_counter() - t0, 3)}
    return out


def exp_pyarrow_stream(lake, end):
    """pyarrow, streaming: per file, row groups pruned on TimeGenerated statistics, then
    ParquetFile.iter_batches(64k rows) of the rule's columns, each batch filtered on the window
    and the first `where` (and, for UEBA, a regex on ActivityInsights) before it is kept:
    memory stays at a few batches."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    start, end_ = _window(end)
    t = pa.timestamp("ns", tz="UTC")
    lo, hi = pa.scalar(start, t), pa.scalar(end_, t)
    preds = {
        "AzureActivity": lambda b: pc.equal(pc.ascii_lower(b["OperationNameValue"]), RUN_COMMAND),
        "BehaviorAnalytics": lambda b: pc.and_(
            pc.equal(b["EventSource"], "Azure AD"),
            pc.or_(pc.match_substring_regex(b["ActivityInsights"],
                                            r'"ActionUncommonlyPerformedByUser"\s*:\s*"True"'),
                   pc.match_substring(b["ActivityInsights"], "\\")))}
    out = {}
    for table, cols in RULE_COLUMNS.items():
        t0 = time.perf_counter()
        parts, in_window = [], 0
        for f in sorted((Path(lake) / table).rglob("*.parquet")):
            pf = pq.ParquetFile(f)
            i = pf.schema_arrow.get_field_index("TimeGenerated")
            groups = [g for g in range(pf.metadata.num_row_groups)
                      if not ((st := pf.metadata.row_group(g).column(i).statistics) is not None
                              and st.has_min_max and (st.max < start or st.min >= end_))]
            if not groups:
                continue
            for b in pf.iter_batches(batch_size=65536, row_groups=groups, columns=cols):
                w = pc.and_(pc.greater_equal(b["TimeGenerated"], lo), pc.less(b["TimeGenerated"], hi))
                in_window += pc.sum(w).as_py() or 0
                keep = b.filter(pc.and_(w, preds[table](b)))
                if keep.num_rows:
                    parts.append(keep)
        rows = sum(p.num_rows for p in parts)
        out[table] = {"candidates": rows, "rows_in_window": in_window,
                      "seconds": round(time.perf_counter() - t0, 3)}
    return out


def exp_json_filter(lake, end):
    """The UEBA `ActivityInsights.ActionUncommonlyPerformedByUser == "True"` on the Azure AD rows
    in the window: json.loads per row (as correlation does now) vs a vectorised regex prefilter
    (key and "True" value, or any backslash escape) with json.loads on the survivors only."""
    import json as _json
    import pyarrow.compute as pc
    tbl = _pa_dataset(lake, "BehaviorAnalytics").to_table(
        columns=["ActivityInsights"], filter=_pa_window(end) & (pc.field("EventSource") == "Azure AD"))
    text = tbl["ActivityInsights"]
    t0 = time.perf_counter()
    slow = 0
    for v in text.to_pylist():
        try:
            d = _json.loads(v) if v is not None else None
        except ValueError:
            d = None
        slow += isinstance(d, dict) and d.get("ActionUncommonlyPerformedByUser") == "True"
    t1 = time.perf_counter()
    maybe = pc.or_(pc.match_substring_regex(text, r'"ActionUncommonlyPerformedByUser"\s*:\s*"True"'),
                   pc.match_substring(text, "\\"))
    survivors = pc.filter(text, pc.fill_null(maybe, False)).to_pylist()
    fast = 0
    for v in survivors:
        try:
            d = _json.loads(v)
        except ValueError:
            d = None
        fast += isinstance(d, dict) and d.get("ActionUncommonlyPerformedByUser") == "True"
    t2 = time.perf_counter()
    return {"rows": len(text), "json_per_row_s": round(t1 - t0, 3), "matches": slow,
            "prefilter_s": round(t2 - t1, 3), "parsed_after_prefilter": len(survivors),
            "matches_after_prefilter": fast, "same": slow == fast}


def exp_pyarrow_two_phase(lake, end):
    """pyarrow, per row group: read TimeGenerated + OperationNameValue, filter; read the wide
    columns only for row groups holding a candidate, and take the candidate rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    start, end_ = _window(end)
    t = pa.timestamp("ns", tz="UTC")
    lo, hi = pa.scalar(start, t), pa.scalar(end_, t)
    out = {}
    for table, narrow, pred in (
            ("AzureActivity", ["TimeGenerated", "OperationNameValue"],
             lambda b: pc.equal(pc.ascii_lower(b["OperationNameValue"]), RUN_COMMAND)),
            ("BehaviorAnalytics", ["TimeGenerated", "EventSource", "ActivityInsights"],
             lambda b: pc.and_(pc.equal(b["EventSource"], "Azure AD"),
                               pc.match_substring(b["ActivityInsights"], "ActionUncommonlyPerformedByUser")))):
        t0 = time.perf_counter()
        parts, in_window, groups, wide_groups = [], 0, 0, 0
        wide = [c for c in RULE_COLUMNS[table] if c not in narrow]
        for f in sorted((Path(lake) / table).rglob("*.parquet")):
            pf = pq.ParquetFile(f)
            for g in range(pf.metadata.num_row_groups):
                groups += 1
                st = pf.metadata.row_group(g).column(pf.schema_arrow.get_field_index("TimeGenerated")).statistics
                if st is not None and st.has_min_max and (st.max < start or st.min >= end_):
                    continue
                b = pf.read_row_group(g, columns=narrow)
                w = pc.and_(pc.greater_equal(b["TimeGenerated"], lo), pc.less(b["TimeGenerated"], hi))
                in_window += pc.sum(w).as_py() or 0
                m = pc.and_(w, pred(b))
                idx = np.flatnonzero(m.to_numpy(zero_copy_only=False))
                if len(idx) == 0:
                    continue
                wide_groups += 1
                rest = pf.read_row_group(g, columns=wide).take(pa.array(idx))
                parts.append(pa.Table.from_arrays(
                    [b[c].take(pa.array(idx)) for c in narrow] + [rest[c] for c in wide], names=narrow + wide))
        rows = sum(p.num_rows for p in parts)
        out[table] = {"candidates": rows, "rows_in_window": in_window, "row_groups": groups,
                      "row_groups_wide_read": wide_groups, "seconds": round(time.perf_counter() - t0, 3)}
    return out


def exp_duckdb_pushdown(lake, end):
    """DuckDB: window + first `where` pushed into the scan, rule columns to Arrow (to pandas)."""
    import duckdb
    from .peer import _glob, _ts
    start, end_ = _window(end)
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    w = f"TimeGenerated >= {_ts(start)} AND TimeGenerated < {_ts(end_)}"
    out = {}
    for table, cond in (("AzureActivity", f"lower(OperationNameValue) = '{RUN_COMMAND}'"),
                        ("BehaviorAnalytics", "EventSource = 'Azure AD' AND contains(ActivityInsights, "
                                              "'ActionUncommonlyPerformedByUser')")):
        cols = ", ".join(f'"{c}"' for c in RULE_COLUMNS[table])
        t0 = time.perf_counter()
        cur = con.execute(f"SELECT {cols} FROM read_parquet({_glob(lake, table)}, hive_partitioning=true) "
                          f"WHERE {w} AND {cond}")
        tbl = (getattr(cur, "to_arrow_table", None) or getattr(cur, "fetch_arrow_table"))()
        t1 = time.perf_counter()
        # date_trunc has no TIMESTAMPTZ_NS overload in DuckDB 2.0: bucket on epoch_ns instead.
        prof = con.execute(f"SELECT epoch_ns(TimeGenerated) // {3600 * 10**9} h, count(*) n, epoch_ns(max(TimeGenerated)) "
                           f"FROM read_parquet({_glob(lake, table)}, hive_partitioning=true) WHERE {w} "
                           f"GROUP BY ALL").fetchall()
        out[table] = {"candidates": tbl.num_rows, "scan_s": round(t1 - t0, 3),
                      "hourly_profile_s": round(time.perf_counter() - t1, 3),
                      "rows_in_window": sum(r[1] for r in prof), "types": str(tbl.schema.field("TimeGenerated").type)}
    return out


def exp_import(module):
    def run(lake, end):
        t0 = time.perf_counter()
        __import__(module)
        return {"seconds": round(time.perf_counter() - t0, 3)}
    run.__doc__ = f"import {module}"
    return run


EXPERIMENTS = {
    "pyarrow_window_to_pandas": exp_pyarrow_window,
    "pyarrow_times_only": exp_pyarrow_times_only,
    "pyarrow_pushdown": exp_pyarrow_pushdown,
    "pyarrow_pushdown_cast": exp_pyarrow_pushdown_cast,
    "pyarrow_two_phase": exp_pyarrow_two_phase,
    "pyarrow_stream": exp_pyarrow_stream,
    "json_filter": exp_json_filter,
    "duckdb_pushdown": exp_duckdb_pushdown,
    "import_pandas": exp_import("pandas"),
    "import_pyarrow_dataset": exp_import("pyarrow.dataset"),
    "import_great_expectations": exp_import("great_expectations"),
    "import_duckdb": exp_import("duckdb"),
}


def experiments(lake: Path, end: str, out_dir: Path, names=None) -> dict:
    out_dir, lake = Path(out_dir).resolve(), Path(lake).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in names or EXPERIMENTS:
        res = out_dir / f"exp-{name}.json"
        res.unlink(missing_ok=True)
        run = harness.run_child([sys.executable, "-m", "bench.profile", "--experiment-child", name,
                                 "--source", str(lake), "--end", end, "--out", str(res)],
                                out_dir / f"exp-{name}.log")
        out[name] = {"what": EXPERIMENTS[name].__doc__, "wall_s": run["wall_s"], "cpu_s": run["cpu_s"],
                     "peak_rss_mib": run["peak_rss_mib"], "exit_code": run["exit_code"],
                     "detail": json.loads(res.read_text()) if res.exists() else harness._tail(run["log"], 10)}
        print(f"  experiment {name:28} wall {run['wall_s']:7.2f}s cpu {run['cpu_s']:7.2f}s "
              f"peak {run['peak_rss_mib']:8,.0f} MiB", file=sys.stderr)
    return out


# --- all --------------------------------------------------------------------------------------------

def profile_all(lake: Path, end: str, out_dir: Path, skip_cprofile=False, skip_experiments=False,
                code=None, names=None) -> dict:
    out_dir, lake = Path(out_dir).resolve(), Path(lake).resolve()   # children run in `code`
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"lake": str(lake), "end": end, "ours_code": str(code or harness.REPO)}
    report["importtime"] = importtime(lake, end, out_dir, code)
    report["steps"] = steps(lake, end, out_dir, code)
    if not skip_cprofile:
        report["cprofile"] = cprofile(lake, end, out_dir, code=code)
    if not skip_experiments:
        report["experiments"] = experiments(lake, end, out_dir, names)
    (out_dir / "profile.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", type=Path, required=True)
    p.add_argument("--end", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--skip-cprofile", action="store_true")
    p.add_argument("--skip-experiments", action="store_true")
    p.add_argument("--only", default=None, help="comma-separated experiments to run")
    p.add_argument("--only-experiments", action="store_true")
    p.add_argument("--ours-ref", default=None, help="profile `ours` as of this commit (see python -m bench)")
    p.add_argument("--ours-path", type=Path, default=None)
    p.add_argument("--steps-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--experiment-child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.steps_child:
        steps_main(a.source, a.end, a.out)
        return 0
    if a.experiment_child:
        result = EXPERIMENTS[a.experiment_child](a.source, a.end)
        a.out.write_text(json.dumps(result, indent=2, default=str))
        return 0
    names = a.only.split(",") if a.only else None
    if a.only_experiments:
        report = experiments(a.source, a.end, a.out, names)
    else:
        code = harness.ours_code(a.ours_ref, a.ours_path)
        report = profile_all(a.source, a.end, a.out, a.skip_cprofile, a.skip_experiments, code, names)
    print(json.dumps({k: v for k, v in report.items() if k != "cprofile"}, indent=2, default=str)[:20000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
