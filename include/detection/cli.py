"""Command line: hunting and re-runs without Airflow.

  python -m include.detection detect --source DIR|URL --end TS [--period 2d] --out FILE
  python -m include.detection detect --source DIR|URL --from TS --to TS [--every 1d] --out FILE
  python -m include.detection run --source DIR|URL --end TS      (detect + alert + deliver)
  python -m include.detection alerts [--format jsonl|table] | alerts show ID
  python -m include.detection alerts redeliver [ID] [--destination NAME ...] [--force]
  python -m include.detection demo --out DIR [--format parquet|jsonl]

Exit codes: 0 ran (zero results is a success), 2 usage/configuration, 3 data-quality gate failed,
4 a destination could not take every alert (they stay pending).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from . import config
from .errors import DetectionError, UsageError
from .text import json_text, printable, printable_lines


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m include.detection",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)

    for name in ("detect", "run"):
        d = sub.add_parser(
            name,
            help="run the rule over a folder of exports"
            if name == "detect"
            else "detect, then store alerts and deliver tickets",
        )
        d.add_argument(
            "--source",
            default=None,
            help="where AzureActivity/BehaviorAnalytics are (default "
            "DETECTION_SOURCE): a folder (.jsonl, Parquet folder, .csv, or the "
            "am-* containers of Azure Monitor's data export), a file://, "
            "memory://, abfs://, az://, s3:// URL of one, loganalytics://<id>, "
            "or kusto://<host>/<database>",
        )
        d.add_argument(
            "--end",
            required=name == "run",
            help="window end, ISO 8601 UTC (exclusive)"
            + ("; or a range of windows: --from/--to" if name == "detect" else ""),
        )
        d.add_argument(
            "--period", default=None, help="Kusto timespan, e.g. 2d or 36h (default: rule's)"
        )
        d.add_argument("--rule", default="runcommand_ueba_breach", help="rule name or YAML path")
        d.add_argument(
            "--quarantine",
            type=Path,
            default=None,
            help="folder for unreadable records (default: beside --out, or the home)",
        )
        d.add_argument(
            "--docs",
            type=Path,
            default=None,
            help="build Great Expectations Data Docs for this run into this folder "
            "(implies --validator ge)",
        )
        d.add_argument(
            "--validator",
            choices=["native", "ge"],
            default="native",
            help="evaluate the data-quality suites natively (fast, default) or with "
            "Great Expectations (as the DAG does; ~2.5 s to import)",
        )
        d.add_argument(
            "--no-cache",
            action="store_true",
            help="read every Parquet file afresh, without the scan cache "
            "(DETECTION_CACHE, default $DETECTION_HOME/cache)",
        )
        if name == "detect":
            d.add_argument(
                "--out", type=Path, required=True, help="result file, .jsonl or .parquet"
            )
            d.add_argument(
                "--from",
                dest="first",
                default=None,
                help="hunt over a range: the first window's end, ISO 8601 UTC",
            )
            d.add_argument(
                "--to",
                dest="last",
                default=None,
                help="the last window's end (included); one file, a leading WindowEnd",
            )
            d.add_argument(
                "--every",
                default=None,
                help="Kusto timespan between window ends (default: the rule's queryFrequency, 1d)",
            )
        else:
            d.add_argument(
                "--grouping",
                choices=["AlertPerExecution", "SingleAlert", "AlertPerResult"],
                default=None,
                help="alert grouping (default: the rule's eventGroupingSettings)",
            )

    a = sub.add_parser(
        "alerts",
        help="list, show or redeliver stored alerts (DETECTION_ALERT_STORE)",
        description="alerts [list] | alerts show ID | alerts redeliver [ID] "
        "[--destination NAME ...] [--force]",
    )
    a.add_argument("action", nargs="?", choices=["list", "show", "redeliver"], default="list")
    a.add_argument("alert_id", nargs="?", help="show: required; redeliver: only this alert")
    a.add_argument(
        "--format",
        choices=["jsonl", "table"],
        default="jsonl",
        help="list: one JSON object per line (default) or a table",
    )
    a.add_argument(
        "--destination",
        action="append",
        help="redeliver: only this destination (repeatable; default DETECTION_DESTINATIONS)",
    )
    a.add_argument(
        "--force",
        action="store_true",
        help="redeliver: send again even if delivered (updates the same ticket)",
    )

    m = sub.add_parser("demo", help="write the seeded demo data set")
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--format", choices=["parquet", "jsonl"], default="parquet")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.root.handlers:  # libraries that pin their loggers to INFO stay quiet
        handler.setLevel(logging.WARNING)
    args = _parser().parse_args(argv)
    try:
        return {"detect": _detect, "run": _run, "alerts": _alerts, "demo": _demo}[args.command](
            args
        )
    except DetectionError as exc:
        print(f"error: {printable_lines(exc)}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a path from the arguments or the environment: unusable as given
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or type(exc).__name__}{printable(where)}", file=sys.stderr)
        return UsageError.exit_code


def _detection(args, out_dir: Path, store=None):
    """Run the gated detection and report on stderr; the quarantine is written even when the
    gate fails (nothing is dropped silently). With a `store`, the gate judges the window against
    the table's history there and the run (passed or failed) joins that history."""
    from .pipeline import detect, record_run
    from .rule import load_rule, parse_timespan

    rule = load_rule(args.rule)
    period = parse_timespan(args.period) if args.period else rule.query_period
    source = _source(args)
    engine = "ge" if args.docs else args.validator
    detection = detect(
        source,
        args.end,
        period,
        rule,
        docs_dir=args.docs,
        raise_on_failure=False,
        engine=engine,
        store=store,
    )
    _report(detection, args, out_dir)
    if store is not None:
        for table, checked in detection.quality.items():
            record_run(
                store,
                rule,
                table,
                detection.start,
                detection.end,
                detection.scans[table].summary(),
                checked.status,
            )
    if detection.failures:
        raise detection.error()
    return rule, detection


def _source(args):
    """The source the arguments name, opened."""
    from . import sources
    from .connections import register_url

    source = args.source or config.source()
    register_url(str(source))  # a SAS token in the URL is masked wherever it could appear
    local = sources.local_path(source)  # only a folder on this machine can be checked up front
    if local is not None and not local.is_dir():
        raise UsageError(f"--source {local} is not a folder")
    return sources.open_source(source, cache=False if getattr(args, "no_cache", False) else None)


def _report(detection, args, out_dir: Path) -> None:
    from . import quarantine as q

    for scan in detection.scans.values():
        s = scan.summary()
        repaired = f", {s['repaired']} repaired and kept" if s.get("repaired") else ""
        print(
            f"{s['table']}: {s['rows_read']} rows read ({s['format']}), {s['rows_in_window']} in "
            f"window, {s['quarantined']} quarantined{repaired}",
            file=sys.stderr,
        )
    for checked in detection.quality.values():
        print(f"data quality: {checked.line()}", file=sys.stderr)
    if args.docs:
        print(f"data docs: {Path(args.docs) / 'index.html'}", file=sys.stderr)
    path = q.write(detection.scans.values(), args.quarantine or out_dir, detection.end)
    if path:
        print(f"quarantine: {path}", file=sys.stderr)
    results = (
        "not run (data-quality gate failed)" if detection.result is None else len(detection.result)
    )
    print(
        f"window: [{detection.start.isoformat()}, {detection.end.isoformat()}), results: {results}",
        file=sys.stderr,
    )


def _writable_file(path: Path, flag: str) -> None:
    """Fail before the scan, not after it, when `path` cannot take the result."""
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a folder: give a file name")
    folder = next((p for p in path.absolute().parents if p.exists()), None)
    if folder is None or not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: cannot write in {folder}")


def _detect(args) -> int:
    from . import results

    if args.first or args.last:
        return _detect_range(args)
    if not args.end:
        raise UsageError("detect needs --end, or --from and --to for a range of windows")
    if args.every:
        raise UsageError("--every goes with --from/--to")
    if args.out.suffix not in (".jsonl", ".parquet"):
        raise UsageError(f"--out {args.out}: use a .jsonl or .parquet file name")
    _writable_file(args.out, "--out")
    rule, detection = _detection(args, args.out.parent / "quarantine")
    results.write(detection.result, args.out)
    return 0


def _detect_range(args) -> int:
    """Every window from --from to --to in one process, into one file (ranges.Hunt): a window
    failing the gate is named and has no rows; the others are written; exit 3 if any failed."""
    from . import quarantine as q
    from .ranges import Hunt, RangeQualityError, RangeWriter, span_text
    from .rule import load_rule, parse_timespan

    if args.end or not (args.first and args.last):
        raise UsageError("a range needs --from and --to (and no --end)")
    if args.out.suffix not in (".jsonl", ".parquet"):
        raise UsageError(f"--out {args.out}: use a .jsonl or .parquet file name")
    _writable_file(args.out, "--out")
    rule = load_rule(args.rule)
    hunt = Hunt(
        _source(args),
        args.first,
        args.last,
        parse_timespan(args.every) if args.every else None,
        parse_timespan(args.period) if args.period else None,
        rule,
        engine="ge" if args.docs else args.validator,
        docs_dir=args.docs,
    )
    tty = sys.stderr.isatty()
    failed = []
    with RangeWriter(args.out) as out:
        for i, detection in enumerate(hunt, 1):
            end = detection.end.isoformat()
            if detection.failures:  # named now and at the end; its frames are not kept
                failed.append((detection.end, detection.error()))
                print(
                    ("\r\033[K" if tty else "") + f"window ending {end}: {failed[-1][1]}",
                    file=sys.stderr,
                )
            out.add(detection.end, detection.result)
            if tty:
                print(
                    f"\r[{i}/{len(hunt)}] window ending {end}: {out.rows} rows so far",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
    if tty:
        print(file=sys.stderr)
    path = q.write(
        hunt.quarantine, args.quarantine or args.out.parent / "quarantine", hunt.ends[-1]
    )
    if path:
        print(f"quarantine: {path}", file=sys.stderr)
    print(
        f"windows: {len(hunt)} ending {hunt.ends[0].isoformat()} .. "
        f"{hunt.ends[-1].isoformat()} every {span_text(hunt.every)}, {len(failed)} failed the "
        f"gate; results: {out.rows} rows in {args.out}",
        file=sys.stderr,
    )
    if failed:
        raise RangeQualityError(failed, len(hunt))
    return 0


def _run(args) -> int:
    from .alerts import build_alerts
    from .destinations import deliver_pending
    from .store import open_store

    with open_store() as store:
        rule, detection = _detection(args, config.home() / "quarantine", store)
        alerts = build_alerts(
            detection.result,
            rule,
            detection.start,
            detection.end,
            detection.data_quality,
            grouping=args.grouping,
        )
        window = {
            "window_start": detection.start.isoformat(),
            "window_end": detection.end.isoformat(),
        }
        counts = store.upsert(alerts, run={"run_id": f"cli__{window['window_end']}", **window})
        print(f"alerts: {counts}", file=sys.stderr)
        print(f"deliveries: {deliver_pending(store)}", file=sys.stderr)
    return 0


def _alerts(args) -> int:
    from .destinations import redeliver
    from .store import open_store

    names = config.destinations()
    with open_store() as store:
        if args.action == "redeliver":
            report = redeliver(store, args.alert_id, args.destination or names, force=args.force)
            print(json.dumps(report))
            return 0
        if args.action == "show":
            if not args.alert_id:
                raise UsageError("alerts show needs an alert id")
            alert = store.get(args.alert_id, names)
            if alert is None:
                raise UsageError(f"no alert with id {args.alert_id!r}")
            alert["delivery_log"] = store.delivery_log(args.alert_id)
            print(json_text(alert, indent=2))
            return 0
        items = store.alerts(names)
    if args.format == "table":
        # Every cell is data (caller and VM names reach the title): escaped so that an ESC
        # sequence, CR or U+202E in it can neither forge a line nor drive the terminal.
        print(f"{'id':36}  {'severity':8}  {'start':20}  {'rows':4}  {'tickets':24}  title")
        for a in items:
            tickets = ",".join(t["destination"] for t in a["tickets"] if t["current"]) or "-"
            if a["pending"]:
                tickets += f" (pending: {','.join(a['pending'])})"
            cells = (
                a["id"],
                a["severity"],
                a["start_time"][:19] + "Z",
                len(a["evidence"]),
                tickets,
                a["title"],
            )
            row = [printable(c) for c in cells]
            print(f"{row[0]:36}  {row[1]:8}  {row[2]:20}  {row[3]:>4}  {row[4]:24}  {row[5]}")
    else:
        for a in items:
            print(json_text(a))
    return 0


def _demo(args) -> int:
    from detection_tools import lakegen  # a tool beside the library, only for this subcommand

    lakegen.write_demo(args.out, args.format)
    print(f"demo data ({args.format}) written to {args.out}", file=sys.stderr)
    return 0
