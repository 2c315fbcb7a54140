"""One detection run over a query window: extract both tables, validate, correlate.

The CLI and the DAG call the same functions; the DAG just runs them as separate tasks with
Parquet files in between.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pandas as pd

from . import correlation, quality, sources, storage
from .errors import DataQualityError, IncompleteDataError, UsageError
from .rule import Rule, load_rule

# Times are nanosecond integers in the scans (DuckDB epoch_ns, pandas datetime64[ns]): a window
# must lie inside what they hold, [1970, 2262). Sentinel itself has no data before 2010.
EARLIEST, LATEST = pd.Timestamp("1970-01-01", tz="UTC"), pd.Timestamp("2262-04-11", tz="UTC")


def window(end, period: timedelta) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The query period as a half-open UTC interval [end - period, end)."""
    example = "use ISO 8601, e.g. 2026-11-01T00:00:00Z"
    try:
        parsed = pd.Timestamp(end)
    except (ValueError, TypeError, OverflowError):
        raise UsageError(f"--end {end!r} is not a timestamp ({example})") from None
    if parsed is pd.NaT or pd.isna(parsed):
        raise UsageError(f"--end {end!r} is not a timestamp ({example})")
    parsed = parsed.tz_localize("UTC") if parsed.tzinfo is None else parsed.tz_convert("UTC")
    start = parsed - pd.Timedelta(period)
    if start < EARLIEST or parsed >= LATEST:
        raise UsageError(
            f"window [{start}, {parsed}) is outside the supported range "
            f"[{EARLIEST.date()}, {LATEST.date()})"
        )
    return start.as_unit("ns"), parsed.as_unit("ns")


def extract(source, table: str, start, end, rule: Rule | None = None) -> sources.Scan:
    """One table's scan for the window from any source (a folder, a URL, or one already opened:
    sources.open_source)."""
    rule = rule or load_rule()
    return sources.open_source(source).scan(table, start, end, rule.inputs[table])


def validate(
    scan: sources.Scan,
    start,
    end,
    rule: Rule | None = None,
    history: list[int] | None = None,
    docs_dir: Path | None = None,
    raise_on_failure: bool = True,
    engine: str = "ge",
) -> quality.TableQuality:
    rule = rule or load_rule()
    return quality.validate(
        scan.table,
        scan.frame,
        scan.summary(),
        rule.inputs[scan.table],
        start,
        end,
        history,
        docs_dir,
        raise_on_failure,
        engine,
    )


@dataclass
class Detection:
    start: pd.Timestamp
    end: pd.Timestamp
    scans: dict[str, sources.Scan]
    quality: dict[str, quality.TableQuality]
    result: pd.DataFrame | None

    @property
    def failures(self) -> list[dict]:
        return [f for q in self.quality.values() for f in q.failures]

    def error(self) -> DataQualityError:
        only_completeness = all(f["check"] in quality.COMPLETENESS_CHECKS for f in self.failures)
        return (IncompleteDataError if only_completeness else DataQualityError)(self.failures)

    @property
    def data_quality(self) -> str:
        statuses = {q.status for q in self.quality.values()}
        return (
            "failed" if "failed" in statuses else "warnings" if "warnings" in statuses else "passed"
        )


def detect(
    source,
    end,
    period: timedelta | None = None,
    rule: Rule | None = None,
    docs_dir: Path | None = None,
    history: dict[str, dict] | None = None,
    raise_on_failure: bool = True,
    engine: str = "ge",
    store=None,
) -> Detection:
    """Extract, gate and correlate one window. A critical data-quality failure of either table
    stops it before correlating: DataQualityError naming every failure (or, with
    raise_on_failure=False, a Detection whose `result` is None and `failures` says why).

    `history` ({table: see _history}) is what the gate judges volume and rhythm against; without
    it, it is read from `store` (read only: the caller records the run, see record_run)."""
    rule = rule or load_rule()
    start, end = window(end, period or rule.query_period)
    if history is None and store is not None:
        history = {t: _history(store, rule, t, end.isoformat()) for t in sources.TABLES}
    if engine == "ge":
        quality.prefetch()
    source = sources.open_source(source)  # once: a remote source's client serves both tables
    # The scan cache's missing pieces of both tables (a daily run: each table's new day) are
    # built side by side on their own threads while the tables are scanned, which then wait
    # for them; sources without a cache have nothing to prepare.
    prepare = getattr(source, "prepare", None)
    if prepare is not None:
        for t in sources.TABLES:
            prepare(t, start, end, rule.inputs[t])
    # One table after the other: each DuckDB scan already uses every core (measured: two side
    # by side are ~7% slower at 10M rows/day).
    scans = {t: extract(source, t, start, end, rule) for t in sources.TABLES}
    checks = {
        t: validate(
            s,
            start,
            end,
            rule,
            (history or {}).get(t),
            docs_dir,
            raise_on_failure=False,
            engine=engine,
        )
        for t, s in scans.items()
    }
    detection = Detection(start, end, scans, checks, None)
    if detection.failures:
        if raise_on_failure:
            raise detection.error()
        return detection
    detection.result = correlation.correlate(
        scans["AzureActivity"].frame, scans["BehaviorAnalytics"].frame
    )
    return detection


# --- Staging: each DAG run writes its own interval-keyed Parquet files --------------------------
# Locations are text, a path or a URL (storage): what one task writes, a task on another host
# reads back through the same URL.


def run_folder(base, rule: Rule, start, end, workspace: str | None = None) -> str:
    """`<base>/<rule id>/<start>--<end>/`: one folder per interval, so re-runs overwrite their
    own files and overlapping windows never share one. `base` a path or URL (storage). One of
    several workspaces (partitions) gets its own folder inside: `.../workspace=<id>/`."""
    folder = storage.join(base, rule.id, run_folder_name(start, end))
    return storage.join(folder, workspace_folder(workspace)) if workspace else folder


def workspace_folder(workspace: str) -> str:
    """`workspace=<GUID>`; a resource id's slashes and other characters become `_`."""
    return "workspace=" + re.sub(r"[^A-Za-z0-9._-]+", "_", workspace).strip("_")


def partitions(source) -> list[str | None]:
    """What the DAG maps over: the workspaces of a `loganalytics://<id>,<id>` source, one
    partition each, so a tenant that does not answer holds back no other tenant's alerts and two
    tenants' rows never meet in one correlation. Any other source is one partition, `None`.
    Only ids leave here (they go to XCom): never the URL, which may carry a credential."""
    from . import remote

    if remote.scheme(source) == "loganalytics":
        from .remote.loganalytics import parse_url

        return parse_url(remote.normalize(source))
    return [None]


def open_partition(source, workspace: str | None, credential=None):
    """The source one partition reads: the whole source, or one of its workspaces."""
    opened = sources.open_source(source, credential=credential)
    return opened.only(workspace) if workspace else opened


def history_scope(rule: Rule, workspace: str | None) -> str:
    """Whose volume and rhythm history a run is judged against (and recorded into): the rule's,
    or, per workspace, the rule's in that workspace (tenants differ in size and habits)."""
    return f"{rule.id}@{workspace}" if workspace else rule.id


def run_folder_name(start, end) -> str:
    """`<start>--<end>` in UTC, e.g. 20261030T000000Z--20261101T000000Z."""
    fmt = "%Y%m%dT%H%M%SZ"
    start, end = (pd.Timestamp(t) for t in (start, end))
    start, end = (t.tz_convert("UTC") if t.tzinfo else t for t in (start, end))
    return f"{start.strftime(fmt)}--{end.strftime(fmt)}"


@dataclass(frozen=True)
class Staged:
    """Where one table's files for a run live in its run folder (a path or URL: storage)."""

    folder: str
    table: str

    def __post_init__(self):
        object.__setattr__(self, "folder", os.fspath(self.folder))

    @property
    def data(self) -> str:
        return storage.join(self.folder, f"{self.table}.parquet")

    @property
    def stats(self) -> str:
        return storage.join(self.folder, f"{self.table}.stats.json")

    @property
    def verdicts(self) -> str:  # the validate step's results folder (quality names the file)
        return storage.join(self.folder, "quality")

    @property
    def verdict(self) -> str:
        return storage.join(self.verdicts, f"{self.table}.validation.json")

    @property
    def docs(self) -> str:
        return storage.join(self.folder, "data_docs", self.table)

    @property
    def quarantine(self) -> str:
        return storage.join(self.folder, "quarantine", self.table)

    @classmethod
    def of(cls, extracted: dict) -> "Staged":
        """The files of a table extract_to_stage staged (its returned dict, e.g. from XCom)."""
        return cls(extracted["path"].rpartition("/")[0], extracted["table"])


def stage(frame: pd.DataFrame, path) -> str:
    """Write a frame as Parquet at `path` (a path or URL) atomically."""
    import pyarrow as pa

    return storage.write_parquet(pa.Table.from_pandas(frame, preserve_index=False), path)


def load_stage(path) -> pd.DataFrame:
    """A staged frame back, from a path or URL."""
    return storage.read_parquet(path).to_pandas()


def staged_stats(extracted: dict) -> dict:
    """The stats file extract_to_stage wrote for a table (rows, hourly counts, newest row)."""
    return json.loads(storage.read_text(extracted["stats"]))


# --- The DAG's steps as plain functions (the DAG file only wires them) ----------------------------


def extract_to_stage(
    source,
    table: str,
    start,
    end,
    staging,
    rule: Rule | None = None,
    store=None,
    workspace: str | None = None,
    credential=None,
) -> dict:
    """Scan one table for the window into `<run folder>/<table>.parquet` plus a stats file,
    under `staging` (a path or URL: storage); the returned dict names them the same way.

    Raises IncompleteDataError when the window is not complete yet (judged against the table's
    rhythm in `store`, read only), so the caller can wait and scan again; every other problem
    is left to the validation step to name. `workspace`: one partition of the source
    (`partitions`), staged in its own folder; `credential` an azure-core TokenCredential.
    """
    from . import quarantine

    rule = rule or load_rule()
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    folder = run_folder(staging, rule, start, end, workspace)
    files = Staged(folder, table)
    # An earlier attempt's files must not outlive this one: a failed scan leaves nothing staged
    # (no Data Docs of stale data), and stats are written last, so a table counts as staged only
    # when both files are this attempt's.
    for old in (files.stats, files.data, files.verdict):
        storage.rm(old)
    scan = extract(open_partition(source, workspace, credential), table, start, end, rule)
    path = stage(scan.frame, files.data)
    qpath = quarantine.write([scan], files.quarantine, end)
    stats = {**scan.summary(), "quarantine_file": str(qpath) if qpath else None}
    stats_path = storage.write_text(files.stats, json.dumps(stats, default=str))
    past = _history(store, rule, table, end.isoformat(), workspace)
    missing = quality.incomplete(quality.profile(stats, start, end, past))
    if missing:
        where = {"workspace": workspace} if workspace else {}
        raise IncompleteDataError([{"table": table, **where, **m} for m in missing])
    return {
        "table": table,
        "workspace": workspace,
        "path": path,
        "stats": stats_path,
        "rows_in_window": scan.rows_in_window,
        "candidates": len(scan.frame),
        "quarantined": scan.quarantined,
        "newest": stats.get("newest"),
        "window": [start.isoformat(), end.isoformat()],
    }


def validate_stage(extracted: dict, store=None, rule: Rule | None = None) -> dict:
    """Validate a staged table with the GE suites; the result goes to
    `<run folder>/quality/<table>.validation.json` and the run's volume and hourly profile into
    the store's history. Raises DataQualityError on a critical failure.

    Data Docs are not rendered here: HTML is ~3x the validation's own cost and nobody reads it
    before the alerts go out; `render_docs` does it beside the rest of the run."""
    rule = rule or load_rule()
    table, (start, end) = extracted["table"], extracted["window"]
    workspace = extracted.get("workspace")
    stats = staged_stats(extracted)
    past = _history(store, rule, table, end, workspace)
    try:
        # quality writes the verdict to a local folder; it goes to the run folder passed or
        # failed (the console shows both)
        with tempfile.TemporaryDirectory(prefix="detection-verdict-") as local:
            try:
                checked = quality.validate(
                    table,
                    load_stage(extracted["path"]),
                    stats,
                    rule.inputs[table],
                    start,
                    end,
                    past,
                    results_dir=Path(local),
                )
            finally:
                verdict = Path(local) / f"{table}.validation.json"
                if verdict.is_file():
                    storage.write_bytes(Staged.of(extracted).verdict, verdict.read_bytes())
    except DataQualityError:
        if store:
            record_run(store, rule, table, start, end, stats, "failed", workspace)
        raise
    if store:
        record_run(store, rule, table, start, end, stats, checked.status, workspace)
    return {**checked.summary(), "path": extracted["path"], "workspace": workspace}


def render_docs(
    staging, start, end, store=None, rule: Rule | None = None, workspace: str | None = None
) -> dict[str, str]:
    """Great Expectations Data Docs for each table staged for this window (a failed validation
    included: that is when they are read), in `<run folder>/data_docs/<table>/index.html`.
    Re-runs the same suites with a Data Docs action, so the pages show exactly the checks the
    validate step applied. GE writes to a local folder, which is then copied there (storage).
    Returns {table: index path or URL}; tables never staged are left out."""
    rule = rule or load_rule()
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    folder = run_folder(staging, rule, start, end, workspace)
    pages = {}
    for table in sources.TABLES:
        files = Staged(folder, table)
        try:
            stats = json.loads(storage.read_text(files.stats))
            frame = load_stage(files.data)
        except FileNotFoundError:
            continue
        # the volume history the gate judged with (later runs may have added to the store's)
        try:
            history = json.loads(storage.read_text(files.verdict)).get("history")
        except FileNotFoundError:
            history = _history(store, rule, table, end.isoformat(), workspace)
        with tempfile.TemporaryDirectory(prefix="detection-docs-") as local:
            quality.validate(
                table,
                frame,
                stats,
                rule.inputs[table],
                start,
                end,
                history,
                Path(local),
                raise_on_failure=False,
            )
            storage.put_tree(Path(local), files.docs)
        pages[table] = storage.join(files.docs, "index.html")
    return pages


def correlate_stage(activity: dict, ueba: dict) -> dict:
    """The correlate step: both staged tables in, `<run folder>/result.parquet` out (the shape
    results.write gives it), as a path or URL like theirs."""
    from . import results

    result = correlation.correlate(load_stage(activity["path"]), load_stage(ueba["path"]))
    out = storage.join(Staged.of(activity).folder, "result.parquet")
    storage.write_parquet(
        results.to_arrow(result, correlation.OUTPUT_COLUMNS + correlation.CONTEXT_COLUMNS), out
    )
    return {"path": out, "results": len(result)}


def load_result(path) -> pd.DataFrame:
    """correlate_stage's result back as correlate() shaped it (results.load), from a path or URL."""
    from . import results

    return results.from_arrow(storage.read_parquet(path))


def _history(store, rule: Rule, table: str, end: str, workspace: str | None = None) -> dict | None:
    """What the gate judges a window against: the trailing runs' volumes and hourly profiles
    (runs that failed are left out: an outage is neither a baseline nor a rhythm)."""
    if not store:
        return None
    t = quality.load_config()["thresholds"]
    scope = history_scope(rule, workspace)
    return {
        "volumes": store.trailing_runs(scope, table, end, t["volume_history_runs"]),
        "profiles": store.trailing_profiles(scope, table, end, t["rhythm_history_runs"]),
    }


def record_run(
    store,
    rule: Rule,
    table: str,
    start,
    end,
    stats: dict,
    status: str,
    workspace: str | None = None,
) -> None:
    """Keep a run's volume and hourly profile in the store's history (a re-run of the interval
    replaces them). `end` as the run's window end in ISO 8601, as _history reads it."""
    end = pd.Timestamp(end).isoformat()
    scope = history_scope(rule, workspace)
    store.record_run(scope, table, end, stats["rows_in_window"], status)
    store.record_profile(
        scope, table, end, quality.hourly_counts(stats, start, end), stats.get("newest"), status
    )
