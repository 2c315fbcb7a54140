"""`python -m bench`: generate (or reuse) the lakes, run both engines per scale, report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import harness


def parse_scales(text: str) -> dict[str, int]:
    """ "S,M,L" or custom "T=20000" items (AzureActivity rows per day)."""
    scales = {}
    for item in (s.strip() for s in text.split(",") if s.strip()):
        name, _, rows = item.partition("=")
        if rows:
            scales[name] = int(float(rows))
        elif name.upper() in harness.SCALES:
            scales[name.upper()] = harness.SCALES[name.upper()]
        else:
            raise argparse.ArgumentTypeError(f"unknown scale {name!r} (S, M, L or NAME=ROWS)")
    return scales


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument(
        "--scales",
        type=parse_scales,
        default=dict(harness.SCALES),
        help="comma-separated: S (200k), M (2M), L (10M AzureActivity rows/day) or NAME=ROWS",
    )
    p.add_argument(
        "--repeat", type=int, default=1, help="runs per engine and scale (median reported)"
    )
    p.add_argument("--out", type=Path, default=Path("bench-out/report.json"))
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="lake cache (default: $BENCH_DATA or <repo>/.data/bench)",
    )
    p.add_argument(
        "--dag", action="store_true", help="also run the DAG-equivalent (see --dag-scale)"
    )
    p.add_argument("--dag-scale", default="M")
    p.add_argument(
        "--airflow",
        action="store_true",
        help="also back-fill the DAG at --dag-scale through a real scheduler and time its tasks",
    )
    p.add_argument("--timeout", type=float, default=None, help="seconds per engine run")
    p.add_argument(
        "--no-warm", action="store_true", help="do not pre-read the lake into the page cache"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="lake generation processes (1: on this 2-vCPU VM two are slower than one)",
    )
    p.add_argument("--compression", default="zstd", choices=["zstd", "snappy"])
    p.add_argument(
        "--ours-ref",
        default=None,
        help="measure `ours` as of this commit (git archive of include/), not the working tree",
    )
    p.add_argument(
        "--ours-path",
        type=Path,
        default=None,
        help="measure `ours` from this folder (holding include/), not the working tree",
    )
    p.add_argument(
        "--no-flagged",
        action="store_true",
        help="skip each scale's scenario where UEBA flags 1 in 8 Azure AD sign-ins",
    )
    p.add_argument(
        "--no-backfill",
        action="store_true",
        help="skip the back-fill of 14 daily windows of a 15-day lake (1M rows/day): "
        "one `detect --from --to` vs the DuckDB query looped in one process, "
        "and 14 processes of each",
    )
    p.add_argument(
        "--no-cache-figures",
        action="store_true",
        help="skip the scan cache's figures: the daily run with the previous day "
        "cached at each scale, and the back-fill with the cache (bench/cache.py)",
    )
    p.add_argument(
        "--backfill-share",
        type=float,
        default=None,
        help="share of Azure AD sign-ins flagged in the back-fill lake (default 1/8)",
    )
    a = p.parse_args(argv)
    code = harness.ours_code(a.ours_ref, a.ours_path, a.data_dir)
    if a.ours_ref or a.ours_path:
        print(f"ours: {code}", file=sys.stderr)

    report = harness.run_bench(
        a.scales,
        a.repeat,
        a.data_dir,
        a.out,
        a.dag,
        a.dag_scale,
        a.timeout,
        not a.no_warm,
        a.workers,
        a.compression,
        code=code,
        airflow=a.airflow,
        flagged=not a.no_flagged,
        backfill=not a.no_backfill,
        backfill_share=a.backfill_share,
        cached=not a.no_cache_figures,
    )
    print()
    print(harness.format_table(report))
    print(f"\nreport: {a.out}")
    bad = [n for n, s in report["scales"].items() if not s["comparison"].get("agree")]
    if report.get("backfill") and not report["backfill"]["comparison"].get("agree"):
        bad.append("back-fill")
    bad += [
        f"{n} (daily, cached)"
        for n, d in (report.get("daily_cached") or {}).items()
        if not d["comparison"].get("agree")
    ]
    cached = (report.get("backfill") or {}).get("cached")
    if cached and not cached["comparison"].get("agree"):
        bad.append("back-fill (cached)")
    if bad:
        print(
            f"results differ at {', '.join(bad)}: see 'comparison' in the report", file=sys.stderr
        )
        return 1
    return 0
