"""`python -m bench.suites`: run the benchmark suites (see bench/suites/__init__.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import harness
from ..cli import parse_scales
from . import SUITES, runner
from .base import Context


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.suites",
        description=sys.modules[__package__].__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--scale",
        type=parse_scales,
        default=None,
        help="the `scale` parameter of every suite: S, M, L or NAME=ROWS, comma-separated "
        "(default: each suite's own)",
    )
    p.add_argument(
        "--only", default=None, help=f"comma-separated suites (default all: {', '.join(SUITES)})"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="[SUITE.]PARAM=V1,V2",
        help="a parameter's values, e.g. backfill.days=4",
    )
    p.add_argument("--repeat", type=int, default=1, help="runs per measure (median reported)")
    p.add_argument("--out", type=Path, default=Path("bench-out/suite.json"))
    p.add_argument("--data-dir", type=Path, default=None, help="lake cache (as python -m bench)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per process")
    p.add_argument("--no-warm", action="store_true", help="do not pre-read the lakes")
    p.add_argument("--workers", type=int, default=1, help="lake generation processes")
    p.add_argument("--compression", default="zstd", choices=["zstd", "snappy"])
    p.add_argument("--ours-ref", default=None, help="measure `ours` as of this commit")
    p.add_argument("--ours-path", type=Path, default=None, help="measure `ours` from this folder")
    a = p.parse_args(argv)

    overrides = {}
    scales = dict(harness.SCALES)
    if a.scale:
        scales.update(a.scale)
        overrides["scale"] = list(a.scale)
    for item in a.set:
        name, eq, values = item.partition("=")
        if not eq:
            p.error(f"--set {item!r}: expected [SUITE.]PARAM=V1,V2")
        overrides[name] = [runner.parse_value(v) for v in values.split(",")]
    out = a.out.resolve()
    ctx = Context(
        data_dir=Path(a.data_dir or harness.default_data_dir()).resolve(),
        out_dir=out.parent,
        code=harness.ours_code(a.ours_ref, a.ours_path, a.data_dir),
        scales=scales,
        repeat=a.repeat,
        timeout=a.timeout,
        warm=not a.no_warm,
        workers=a.workers,
        compression=a.compression,
        log=lambda *m: print(*m, file=sys.stderr, flush=True),
    )
    only = [s.strip() for s in a.only.split(",")] if a.only else None
    try:
        runner.load(only)  # an unknown suite is a usage error, before any lake is built
    except ValueError as e:
        p.error(str(e))
    report = runner.run(only, ctx, overrides, out)
    print(runner.tables(report))
    print(f"\nreport: {out}")
    failed = runner.failures(report)
    if failed:
        print(
            f"runs failed: {'; '.join(failed)} (their log tails are in the report)", file=sys.stderr
        )
    bad = runner.disagreements(report)
    if bad:
        print(
            f"results differ at {', '.join(bad)}: see 'comparison' in the report", file=sys.stderr
        )
    return 1 if bad or failed else 0


if __name__ == "__main__":
    sys.exit(main())
