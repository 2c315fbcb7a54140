"""Run the suites: every parameter combination's setup, then each measure in its own process,
`repeat` times, medians, and the same comparison tables as `python -m bench`."""

from __future__ import annotations

import ast
import importlib
import json
import statistics
from datetime import datetime, timezone
from pathlib import Path

from .. import harness
from . import SUITES
from .base import Child, Context, Suite

FIGURE = {"time_": ("s", None), "peakmem_": ("MiB", "peak_rss_mib")}


def load(names: list[str] | None = None) -> list[type[Suite]]:
    """The suite classes, in SUITES order (a later suite may read an earlier one's figures:
    the DAG's ratio to `detect` is the single window's), `names` only when given."""
    unknown = set(names or ()) - set(SUITES)
    if unknown:
        raise ValueError(f"unknown suite(s) {sorted(unknown)}: {', '.join(SUITES)}")
    out = []
    for name, (module, cls) in SUITES.items():
        if not names or name in names:
            out.append(getattr(importlib.import_module(f"{__package__}.{module}"), cls))
    return out


def with_params(cls: type[Suite], overrides: dict[str, list]) -> type[Suite]:
    """`cls` with parameter values replaced: `overrides` maps a parameter name, or
    `<suite>.<name>`, to its values (`--scale` sets `scale` where the suite follows it)."""
    params = list(cls.params)
    for k, name in enumerate(cls.param_names):
        generic = cls.follows_scale or name != "scale"
        values = overrides.get(f"{cls.name}.{name}", overrides.get(name) if generic else None)
        if values is not None:
            params[k] = values
    return type(cls.__name__, (cls,), {"params": params})


def _run(child: Child, ctx: Context) -> dict:
    if child.before:
        child.before()
    logs = (
        [child.log]
        if len(child.cmds) == 1
        else [child.log.with_name(f"{child.log.stem}-{k:02d}.log") for k in range(len(child.cmds))]
    )
    each = [
        harness.run_child(cmd, log, env=child.env, timeout=ctx.timeout, cwd=child.cwd)
        for cmd, log in zip(child.cmds, logs)
    ]
    run = each[0] if len(each) == 1 else harness._runs_summary(each)
    if child.after:
        run.update(child.after(run))
    if run["exit_code"] != 0:
        run["log_tail"] = harness._tail(run["log"], 20)
    return run


def run_suite(cls: type[Suite], values: tuple, ctx: Context, report: dict) -> dict:
    """One parameter combination: setup, the measures, the report's section; returns its
    figures ({"time_<name>": median, "peakmem_<name>": median}) and runs."""
    suite = cls(ctx)
    label = ", ".join(f"{n}={v}" for n, v in zip(cls.param_names, values))
    ctx.log(f"{cls.name} ({label}): setup")
    suite.setup(*values)
    runs: dict[str, list[dict]] = {m: [] for m in cls.measures()}
    times: dict[str, str] = {}
    repeat = cls.repeat or ctx.repeat
    for i in range(repeat):
        suite.i = i
        done: dict[tuple, dict] = {}  # measures of one process share its run
        for name in suite.order(i):
            child = suite.child(name, *values)
            times[name] = child.time
            key = tuple(map(tuple, child.cmds))
            if key not in done:
                done[key] = _run(child, ctx)
            run = {**done[key], "repeat": i}
            runs[name].append(run)
            extra = f"  {child.time} {run[child.time]:.2f}" if child.time != "wall_s" else ""
            ctx.log(
                f"  {cls.name + ' ' + name:40} run {i + 1}/{repeat}: wall {run['wall_s']:.2f}s  "
                f"cpu {run['cpu_s']:.2f}s  peak RSS {run['peak_rss_mib']:,.0f} MiB  "
                f"exit {run['exit_code']}{extra}"
            )
    summary = {}
    for name, rs in runs.items():
        summary[name] = harness._summary(rs)
        key = times[name]
        if key not in summary[name]:
            got = [r[key] for r in rs if key in r]
            summary[name][key] = round(statistics.median(got), 3) if got else None
    suite.report(report, runs, summary, *values)
    figures = {}
    for name in cls.measures():
        for prefix, (unit, field) in FIGURE.items():
            if hasattr(cls, prefix + name):
                figures[prefix + name] = {
                    "value": summary[name][field or times[name]],
                    "unit": unit,
                    "failed_runs": summary[name]["failed_runs"],
                }
    return {"suite": cls.name, "params": dict(zip(cls.param_names, values)), "figures": figures}


def run(
    names: list[str] | None,
    ctx: Context,
    overrides: dict[str, list] | None = None,
    out: Path | None = None,
) -> dict:
    """Every selected suite over its parameters; the report is `make bench`'s shape (scales,
    daily_cached, backfill, dag, plus console and remote) with the suites' figures under
    "suites"."""
    out = Path(out or ctx.out_dir / "suite.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "meta": harness._meta(ctx.code),
        "options": {
            "repeat": ctx.repeat,
            "data_dir": str(ctx.data_dir),
            "scales": ctx.scales,
            "compression": ctx.compression,
        },
        "scales": {},
        "suites": [],
    }
    for cls in load(names):
        cls = with_params(cls, overrides or {})
        for values in cls.combinations():
            report["suites"].append(run_suite(cls, values, ctx, report))
            harness._write_json(out, report)
    report["meta"]["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    harness._write_json(out, report)
    return report


def figures_table(report: dict) -> str:
    """The suites' figures, one line a measure (asv's view)."""
    lines = []
    for s in report["suites"]:
        params = ", ".join(f"{k}={v}" for k, v in s["params"].items())
        lines.append(f"{s['suite']} ({params})")
        for name, f in s["figures"].items():
            value = "failed" if f["value"] is None else f"{f['value']:>10,.3f} {f['unit']}"
            bad = f"  ({f['failed_runs']} failed runs)" if f["failed_runs"] else ""
            lines.append(f"    {name:36} {value}{bad}")
    return "\n".join(lines)


def tables(report: dict) -> str:
    """`make bench`'s tables (harness.format_table), then the console's and the remote's."""
    parts = [figures_table(report), "", harness.format_table({"dag": None, **report})]
    for cls in load():
        if hasattr(cls, "format"):
            parts.extend(cls.format(report))
    return "\n".join(parts)


def disagreements(report: dict) -> list[str]:
    """Where ours and the peer returned different rows (as `python -m bench` checks)."""
    bad = [n for n, s in report["scales"].items() if not s["comparison"].get("agree")]
    bad += [
        f"{n} (daily, cached)"
        for n, d in (report.get("daily_cached") or {}).items()
        if not d["comparison"].get("agree")
    ]
    b = report.get("backfill")
    if b and not b["comparison"].get("agree"):
        bad.append("back-fill")
    if b and b.get("cached") and not b["cached"]["comparison"].get("agree"):
        bad.append("back-fill (cached)")
    if (report.get("remote") or {}).get("pass") is False:
        bad.append("remote pushdown")
    return bad


def failures(report: dict) -> list[str]:
    """Measures with a run that exited non-zero (a timeout, a crash, the console's target
    missed: bench.console exits 1 then, as `make bench` fails on it)."""
    return [
        f"{s['suite']} {name} ({', '.join(f'{k}={v}' for k, v in s['params'].items())})"
        for s in report["suites"]
        for name, f in s["figures"].items()
        if f["failed_runs"]
    ]


def parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def dumps(report: dict) -> str:
    return json.dumps(report, indent=2, default=str)
