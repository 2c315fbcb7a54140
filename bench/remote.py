"""Issue #10's pushdown figure: what crosses the wire when a bench lake is read through the
Log Analytics query API (tests/fakes/loganalytics.py, which evaluates the KQL with duckdb-kql).

    python -m bench.remote --scale M [--cap N] [--margin 6h] [--out bench-out/remote.json]

The lake's window (the rule's query period before the lake's end) plus `--margin` of rows before
it (outside the window: they prove the window filter) is loaded into the fake, both tables, as
frames holding only the rule's input columns. Then `pipeline.detect` runs over
`loganalytics://<workspace>` twice: with no cap, and with answers capped at N rows (default a
quarter of the largest slice's candidate rows, so slices must be split). Reported per table and
query kind (fake.queries, and the source's own per-query log line for the bytes): rows in the
window, rows that crossed the wire, their share of the window's rows, queries, seconds.

Checked (PASS/FAIL), with counts computed here by pandas over the frames the fake holds:
* the rows queries' accepted answers hold exactly the rows passing each side's first `where`
  in the window, and the profile answers one row per non-empty hour of the window;
* a capped answer (a partial result, thrown away and asked again in halves) carries only the
  cap's rows, so the rows that crossed are the candidates plus cap x truncated answers;
* every query filters TimeGenerated to [start, end); the scan's rows in window equal pandas';
* the result equals `detect` over the same lake as a folder, row for row.
Loading the fake is not timed (it stands for the workspace); `seconds` is one `detect`. At M
the whole run took ~2 min and 11.7 GB peak RSS (the frames, the fake's per-value conversion and
its DuckDB copy; loading ~85 s), on the 2-vCPU box.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

RUN_COMMAND = "MICROSOFT.COMPUTE/VIRTUALMACHINES/RUNCOMMAND/ACTION"
INSIGHT = ("ActionUncommonlyPerformedByUser", "True")
KINDS = ("schema", "profile", "rows")


# --- the data ---------------------------------------------------------------------------------


def lake_for(scale: str, data_dir: Path | None = None, log=print, **spec) -> tuple[Path, dict]:
    """The bench lake of `scale` (harness.SCALES), generated only when not cached."""
    from . import harness
    from . import lake as lakes

    rows = harness.SCALES[scale] if scale in harness.SCALES else int(scale)
    return lakes.ensure_lake(
        Path(data_dir or harness.default_data_dir()),
        lakes.LakeSpec(rows_per_day=rows, **spec),
        log=log,
    )


def window(lake_end: str):
    from include.detection import pipeline
    from include.detection.rule import load_rule

    return pipeline.window(lake_end, load_rule().query_period)


def load_frames(lake: Path, start, end, margin: pd.Timedelta) -> dict[str, pd.DataFrame]:
    """Both tables' rows in [start - margin, end), only the rule's input columns, as the
    folder source reads them (unfiltered)."""
    from include.detection import sources
    from include.detection.rule import load_rule

    inputs = load_rule().inputs
    with _env(DETECTION_CACHE="off"):  # a cold read; the scan cache is not under test here
        return {
            t: sources.read_table(lake, t, start - margin, end, inputs[t], prefilter=False).frame
            for t in sorted(inputs)
        }


def _insight_true(text) -> bool:
    """ActivityInsights.ActionUncommonlyPerformedByUser == "True": the string, case-sensitive
    (a JSON true is "true" to Kusto's string comparison)."""
    if not isinstance(text, str):
        return False
    try:
        value = json.loads(text)
    except ValueError:
        return False
    return isinstance(value, dict) and value.get(INSIGHT[0]) == INSIGHT[1]


def expected(frames: dict[str, pd.DataFrame], start, end) -> dict[str, dict]:
    """Per table, from the frames alone: rows in the window, rows passing the side's first
    `where` there (the candidates), non-empty hours (the profile's rows), candidates per hour."""
    out = {}
    for table, frame in frames.items():
        times = frame["TimeGenerated"]
        inside = frame[(times >= start) & (times < end)]
        if table == "AzureActivity":
            keep = inside["OperationNameValue"].str.upper().eq(RUN_COMMAND).fillna(False)
        else:
            keep = inside["EventSource"].eq("Azure AD").fillna(False) & inside[
                "ActivityInsights"
            ].map(_insight_true, na_action="ignore").fillna(False)
        keep = keep.astype(bool)
        hours = inside["TimeGenerated"].dt.floor("h")
        out[table] = {
            "rows_total": len(frame),
            "rows_in_window": len(inside),
            "candidates": int(keep.sum()),
            "hours": int(hours.nunique()),
            "candidate_hours": hours[keep].value_counts().sort_index(),
        }
    return out


def largest_slice(candidate_hours: pd.Series, start, slice_: pd.Timedelta) -> int:
    """Candidate rows of the fullest slice of the window (slices from `start`, as the source
    cuts them)."""
    if candidate_hours.empty:
        return 0
    index = (candidate_hours.index - start) // slice_
    return int(candidate_hours.groupby(index).sum().max())


# --- measuring --------------------------------------------------------------------------------


@contextmanager
def _env(**values):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _WireLog(logging.Handler):
    """The source's one line per query (remote/base.py `_ask`): bytes and seconds per table
    and query kind. Its args: name, target, table, what, start, end, rows, bytes, seconds, ..."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.seen: dict = defaultdict(lambda: {"bytes": 0, "seconds": 0.0})

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        if len(args) >= 9 and record.msg.startswith("%s %s %s %s [%s, %s): %d rows"):
            entry = self.seen[(args[2], args[3])]
            entry["bytes"] += int(args[7]) if str(args[7]).isdigit() else 0
            entry["seconds"] += float(args[8])


def measure(
    fake, workspace: str, token: str, end, cap: int | None, engine: str = "native"
) -> tuple[dict, object]:
    """One `pipeline.detect` over loganalytics://<workspace> served by `fake` with `cap`;
    (figures, the Detection)."""
    from include.detection import pipeline

    with fake.lock:
        fake.cap = cap
        fake.queries.clear()
    wire = _WireLog()
    logger = logging.getLogger("include.detection.remote")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(wire)
    try:
        with _env(DETECTION_LOGANALYTICS_ENDPOINT=fake.url, DETECTION_LOGANALYTICS_TOKEN=token):
            t0 = time.perf_counter()
            detection = pipeline.detect(
                f"loganalytics://{workspace}", end, engine=engine, raise_on_failure=False
            )
            seconds = time.perf_counter() - t0
    finally:
        logger.removeHandler(wire)
        logger.setLevel(level)
    with fake.lock:
        queries = [dict(q) for q in fake.queries]
    tables = {}
    for table in sorted(detection.scans):
        kinds = {}
        for kind in KINDS:
            sent = [q for q in queries if q["table"] == table and q["kind"] == kind]
            kinds[kind] = {
                "queries": len(sent),
                "truncated": sum(q["truncated"] for q in sent),
                "rows_crossed": sum(q["rows"] or 0 for q in sent),
                "rows_accepted": sum(q["rows"] or 0 for q in sent if not q["truncated"]),
                "largest_answer": max((q["rows"] or 0 for q in sent), default=0),
                "bytes": wire.seen[(table, kind)]["bytes"],
                "seconds": round(wire.seen[(table, kind)]["seconds"], 3),
            }
        scan = detection.scans[table]
        tables[table] = {
            "rows_in_window": scan.rows_in_window,
            "frame_rows": len(scan.frame),
            "kinds": kinds,
        }
    figures = {
        "cap": cap,
        "seconds": round(seconds, 3),
        "queries": len(queries),
        "data_quality": detection.data_quality,
        "result_rows": None if detection.result is None else len(detection.result),
        "tables": tables,
        "windows": [q["window"] for q in queries],
        "other_queries": [q["query"] for q in queries if q["kind"] not in KINDS],
    }
    return figures, detection


def checks(figures: dict, want: dict[str, dict], start, end, same_result: bool | None) -> dict:
    """What must hold for one run (see the module doc); {name: bool}."""
    out = {}
    cap = figures["cap"]
    for table, t in figures["tables"].items():
        e, rows, profile = want[table], t["kinds"]["rows"], t["kinds"]["profile"]
        out[f"{table}: accepted rows == candidates"] = rows["rows_accepted"] == e["candidates"]
        out[f"{table}: rows in window == pandas"] = t["rows_in_window"] == e["rows_in_window"]
        if profile["truncated"] == 0:  # unsplit 1 h bins: one summary row per non-empty hour
            out[f"{table}: profile rows == non-empty hours"] = (
                profile["rows_accepted"] == e["hours"]
            )
        if cap is not None:
            crossed = sum(k["rows_crossed"] - k["rows_accepted"] for k in t["kinds"].values())
            truncated = sum(k["truncated"] for k in t["kinds"].values())
            out[f"{table}: a partial answer carries only the cap's rows"] = (
                crossed == cap * truncated
            )
    if cap is not None:
        out["the cap split slices"] = any(
            t["kinds"]["rows"]["truncated"] for t in figures["tables"].values()
        )
    out["every query filters TimeGenerated to the window"] = not figures["other_queries"] and all(
        w is not None and start <= pd.Timestamp(w[0]) < pd.Timestamp(w[1]) <= end
        for w in figures["windows"]
    )
    out["data quality passed"] = figures["data_quality"] != "failed"
    if same_result is not None:
        out["result equals the folder's detect"] = same_result
    return out


def same_rows(ours, theirs) -> bool:
    from tests.oracle import as_counter, normalize_ours

    if ours is None or theirs is None:
        return False
    return as_counter(normalize_ours(ours)) == as_counter(normalize_ours(theirs))


def folder_detect(lake: Path, end, engine: str = "native") -> tuple[object, float]:
    from include.detection import pipeline

    with _env(DETECTION_CACHE="off"):
        t0 = time.perf_counter()
        detection = pipeline.detect(str(lake), end, engine=engine)
        return detection, time.perf_counter() - t0


def auto_cap(want: dict[str, dict], start, slice_: pd.Timedelta) -> int:
    """A quarter of the fullest slice's candidate rows: that slice is split at least twice.
    At least 7, so a 6 h slice's profile (6 hourly rows) still fits and only row queries
    split (the profile check then stays exact)."""
    fullest = max(largest_slice(w["candidate_hours"], start, slice_) for w in want.values())
    return max(7, fullest // 4)


def run(
    lake: Path,
    lake_end: str,
    cap: int | None = None,
    margin: str = "6h",
    engine: str = "native",
    log=print,
) -> dict:
    """The whole measurement over one lake (see the module doc); the report as a dict."""
    from include.detection.remote.loganalytics import LogAnalyticsSource
    from tests.fakes.loganalytics import TOKEN, WORKSPACE, FakeLogAnalytics

    start, end = window(lake_end)
    margin_td = pd.Timedelta(margin)
    t0 = time.perf_counter()
    frames = load_frames(lake, start, end, margin_td)
    want = expected(frames, start, end)
    log(
        f"read {sum(len(f) for f in frames.values()):,} rows from {lake.name} "
        f"in {time.perf_counter() - t0:.1f}s"
    )
    t0 = time.perf_counter()
    fake = FakeLogAnalytics({WORKSPACE: frames}).start()
    del frames  # the fake holds its own copy (DuckDB)
    loaded = time.perf_counter() - t0
    log(f"loaded the fake workspace in {loaded:.1f}s")
    try:
        slice_ = pd.Timedelta(LogAnalyticsSource([WORKSPACE], endpoint=fake.url).slice)
        folder, folder_seconds = folder_detect(lake, end, engine)
        log(f"folder detect: {len(folder.result)} rows in {folder_seconds:.1f}s")
        capped = cap or auto_cap(want, start, slice_)
        runs = {}
        for name, c in (("no cap", None), (f"cap {capped}", capped)):
            figures, detection = measure(fake, WORKSPACE, TOKEN, end, c, engine)
            figures["checks"] = checks(
                figures, want, start, end, same_rows(detection.result, folder.result)
            )
            figures["pass"] = all(figures["checks"].values())
            runs[name] = figures
            log(
                f"{name}: {figures['queries']} queries in {figures['seconds']:.1f}s, "
                f"{'PASS' if figures['pass'] else 'FAIL'}"
            )
    finally:
        fake.stop()
    for figures in runs.values():  # long lists: kept out of the report
        figures.pop("windows")
    return {
        "lake": lake.name,
        "window": [start.isoformat(), end.isoformat()],
        "margin": margin,
        "slice": str(slice_.to_pytimedelta()),
        "engine": engine,
        "loaded_seconds": round(loaded, 1),
        "expected": {
            t: {k: v for k, v in w.items() if k != "candidate_hours"} for t, w in want.items()
        },
        "folder": {"seconds": round(folder_seconds, 3), "result_rows": len(folder.result)},
        "runs": runs,
        "pass": all(r["pass"] for r in runs.values()),
    }


# --- the report -------------------------------------------------------------------------------


def table_text(report: dict) -> str:
    head = (
        f"{'run':<9} {'table':<17} {'in window':>10} {'candidates':>10} {'rows':>7} "
        f"{'profile':>7} {'share %':>8} {'wasted':>7} {'wire %':>7} {'queries':>7} "
        f"{'split':>5} {'bytes':>10} {'s':>6}"
    )
    lines = [
        f"{report['lake']}  window {report['window'][0]} .. {report['window'][1]}  "
        f"(+{report['margin']} before it loaded too; slice {report['slice']})",
        head,
        "-" * len(head),
    ]
    for name, r in report["runs"].items():
        totals = Counter()
        for table, t in r["tables"].items():
            k = t["kinds"]
            pulled = k["rows"]["rows_accepted"] + k["profile"]["rows_accepted"]
            wasted = sum(v["rows_crossed"] - v["rows_accepted"] for v in k.values())
            queries = sum(v["queries"] for v in k.values())
            split = sum(v["truncated"] for v in k.values())
            nbytes = sum(v["bytes"] for v in k.values())
            seconds = sum(v["seconds"] for v in k.values())
            totals.update(window=t["rows_in_window"], pulled=pulled, wasted=wasted)
            wire = 100 * (pulled + wasted) / max(t["rows_in_window"], 1)
            lines.append(
                f"{name:<9} {table:<17} {t['rows_in_window']:>10,} "
                f"{report['expected'][table]['candidates']:>10,} "
                f"{k['rows']['rows_accepted']:>7,} {k['profile']['rows_accepted']:>7,} "
                f"{100 * pulled / max(t['rows_in_window'], 1):>8.3f} {wasted:>7,} {wire:>7.3f} "
                f"{queries:>7} "
                f"{split:>5} {nbytes:>10,} {seconds:>6.2f}"
            )
        lines.append(
            f"{name:<9} {'both':<17} {totals['window']:>10,} {'':>10} {'':>7} {'':>7} "
            f"{100 * totals['pulled'] / max(totals['window'], 1):>8.3f} {totals['wasted']:>7,} "
            f"{100 * (totals['pulled'] + totals['wasted']) / max(totals['window'], 1):>7.3f} "
            f"{r['queries']:>7} {'':>5} {'':>10} {r['seconds']:>6.2f}  (detect, s)  "
            f"{'PASS' if r['pass'] else 'FAIL'}"
        )
        lines += [f"    {'ok ' if ok else 'BAD'} {what}" for what, ok in r["checks"].items()]
    lines.append(
        "rows: rows-query rows kept (must equal candidates); profile: its summary rows; "
        "share: (rows + profile) / in window;\nwasted: rows of partial answers thrown "
        "away and asked again in halves; wire: every row that crossed / in window"
    )
    lines.append(
        f"folder detect: {report['folder']['result_rows']} rows in "
        f"{report['folder']['seconds']:.2f}s; overall "
        f"{'PASS' if report['pass'] else 'FAIL'}"
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.remote", description=__doc__.split("\n")[0])
    p.add_argument("--scale", default="M", help="S, M, L (bench.harness.SCALES) or rows per day")
    p.add_argument(
        "--cap",
        type=int,
        default=None,
        help="rows per answer in the capped run (default: a quarter of the fullest "
        "slice's candidate rows, at least 7)",
    )
    p.add_argument("--margin", default="6h", help="rows loaded from before the window (6h)")
    p.add_argument("--data", type=Path, default=None, help="the bench's lake folder")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write the JSON report here (default: stdout, after the table)",
    )
    args = p.parse_args(argv)
    lake, manifest = lake_for(args.scale, args.data, log=lambda m: print(m, file=sys.stderr))
    report = run(
        lake,
        manifest["end"],
        args.cap,
        args.margin,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    report["scale"] = args.scale
    report["command"] = "python -m bench.remote " + " ".join(argv or sys.argv[1:])
    print(table_text(report))
    text = json.dumps(report, indent=2, default=str)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        print(f"report: {args.out}")
    else:
        print(text)
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
