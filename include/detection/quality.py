"""The data-quality gate, with Great Expectations 1.x called directly (the GE Airflow provider
does not install with Airflow 3.3). GE is imported inside functions: it costs ~2.5 s.

A run either says "the data for this window was complete and valid, here are N alerts" or
raises DataQualityError naming the table, column, check and observed value.

Two frames per table are validated:
- the *profile*: one row of table-level facts from the scan (rows in the window, hours with no rows
  that usually have some, ingestion lag beyond the usual one, quarantine ratio, volume vs
  history, stored column types);
- the *rows*: the candidate rows the query works on (run-command rows, Azure AD rows), with a few
  derived columns for checks GE has no expectation for (JSON with a scope, a known status).
Which check is critical and which a warning is set in quality.yaml.

Completeness is judged against the table's own rhythm: an empty hour is a gap only where that
hour of the week usually has rows (learnt from the per-run hourly profiles kept in the alert
store, or given by the source's ingestion metadata as `expected_hourly`), and the newest row is
late only when it is older than the usual newest row of that hour of the week. A table that has
rows at every hour of the day has no quiet hours: every empty hour of it is a gap, history or not.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import pandas as pd
import yaml

from . import kql
from .errors import DataQualityError, DetectionError, IncompleteDataError, UsageError
from .files import write_text
from .rule import YAML_LOADER, parse_timespan

log = logging.getLogger(__name__)

CRITICAL, WARNING = "critical", "warning"
CONFIG_PATH = Path(__file__).with_name("quality.yaml")
STATUS_FAMILIES = (
    "started",
    "start",
    "accepted",
    "accept",
    "succeeded",
    "success",
    "failed",
    "failure",
)
UPN_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
COMPLETENESS_CHECKS = ("no_gap", "fresh")


@lru_cache(maxsize=None)
def load_config(path: str = str(CONFIG_PATH)) -> dict:
    config = yaml.load(Path(path).read_text(), Loader=YAML_LOADER)
    config["thresholds"]["ingestion_delay_hours"] = (
        parse_timespan(config["thresholds"]["ingestion_delay"]).total_seconds() / 3600
    )
    return config


@dataclass
class TableQuality:
    table: str
    status: str  # passed | warnings | failed
    profile: dict
    failures: list[dict] = field(default_factory=list)  # critical
    warnings: list[dict] = field(default_factory=list)
    docs: str | None = None

    @property
    def success(self) -> bool:
        return not self.failures

    def line(self) -> str:
        """The one-line summary for XCom and logs."""
        p = self.profile
        text = (
            f"{self.table}: {self.status}, {self.completeness}; {p['rows_in_window']} rows in "
            "window, "
            f"{p['quarantined']} quarantined, longest gap {p['max_empty_hours']} h, "
            f"lag {p['lag_hours']} h"
        )
        problems = [f"{f['check']}={f['observed']}" for f in self.failures + self.warnings]
        return text + (f"; {', '.join(problems)}" if problems else "")

    @property
    def completeness(self) -> str:
        return completeness(self.profile)

    def summary(self) -> dict:
        return {
            "table": self.table,
            "status": self.status,
            "completeness": self.completeness,
            "summary": self.line(),
            "critical": self.failures,
            "warnings": self.warnings,
            "docs": self.docs,
        }


# --- facts ----------------------------------------------------------------------------------------

HOUR_KEY = "%Y-%m-%dT%H"  # the scan's hourly keys
NOT_JUDGED = "not judged (no history for its empty hours yet)"


def _utc(ts) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def window_hours(start, end) -> pd.DatetimeIndex:
    """The hours a window touches, as UTC hour starts."""
    return pd.date_range(_utc(start).floor("h"), _utc(end), freq="h", inclusive="left")


def hourly_counts(stats: dict, start, end) -> dict[str, int]:
    """Rows per hour of the window, the empty hours listed too (an empty hour is as much an
    observation of the table's rhythm as a full one): what a run records in the store."""
    return {
        key: int(stats["hourly"].get(key, 0))
        for key in (h.strftime(HOUR_KEY) for h in window_hours(start, end))
    }


def volumes(history) -> list[int] | None:
    """The trailing runs' rows in window. `history` is {"volumes": [...], "profiles": [...]}
    (pipeline._history) or, as before profiles were kept, the plain list of volumes."""
    return history.get("volumes") if isinstance(history, dict) else history


def _profiles(history) -> list[dict]:
    profiles = (history.get("profiles") or []) if isinstance(history, dict) else []
    return [p for p in profiles if p.get("status") != "failed"]  # an outage is no rhythm


def usual_hours(stats: dict, start, end, history=None) -> tuple[list[bool | None], str, bool]:
    """For each hour of the window: True when the table usually has rows then, False when it is
    usually quiet, None when nothing says yet. Returns (flags, basis, learned).

    The source's ingestion metadata wins (`expected_hourly` in the scan's stats, hour -> rows
    expected, for sources that know what should have arrived). Else the hour of the week in the
    trailing runs' profiles, once there are `rhythm_min_runs` of them: it usually has rows when
    at least `usual_share` of the times it was seen had some (overlapping windows see an hour
    twice: it counts once). A table that usually has rows at every hour of the day (in those
    runs and this window) has no quiet hours: any hour its history does not show quiet is one
    that usually has rows, from the first run on."""
    t = load_config()["thresholds"]
    hours = window_hours(start, end)
    expected = stats.get("expected_hourly")
    if expected is not None:
        return [bool(expected.get(h.strftime(HOUR_KEY))) for h in hours], "ingestion metadata", True
    profiles = _profiles(history)
    seen: dict[str, int] = {}
    for p in profiles:
        for key, n in p["hourly"].items():
            seen[key] = max(int(n), seen.get(key, 0))
    now = hourly_counts(stats, start, end)
    week: dict[tuple[int, int], list[int]] = {}  # (weekday, hour) -> [times with rows, times seen]
    day: dict[int, list[int]] = {}  # hour of the day -> the same
    for key, n in seen.items():
        h = datetime.strptime(key, HOUR_KEY)
        _tally(week, (h.weekday(), h.hour), n)
        if key not in now:
            _tally(day, h.hour, n)
    for h, n in zip(hours, now.values()):
        _tally(day, h.hour, n)
    share = t["usual_share"]
    dense = len(day) == 24 and all(hits / times >= share for hits, times in day.values())
    learned = len(profiles) >= t["rhythm_min_runs"]
    flags = []
    for h in hours:
        slot = week.get((h.weekday(), h.hour)) if learned else None
        flags.append(slot[0] / slot[1] >= share if slot else True if dense else None)
    basis = (
        f"{len(profiles)} runs"
        if learned
        else f"learning ({len(profiles)} of {t['rhythm_min_runs']} runs)"
    )
    return flags, basis + (", rows every hour of the day" if dense else ""), learned


def _tally(counts: dict, slot, rows: int) -> None:
    hits_seen = counts.setdefault(slot, [0, 0])
    hits_seen[0] += rows > 0
    hits_seen[1] += 1


def _longest_empty_run(hours, counts, flags, count_unknown: bool) -> list[pd.Timestamp]:
    """The longest run of empty hours that usually have rows (and, with count_unknown, of
    hours nothing is known about). An hour with rows ends a run; a usually quiet hour neither
    ends nor extends it: a business table silent from Tuesday 16:00 to Wednesday 11:00 missed
    the hours it usually fills on both days."""
    best: list = []
    run: list = []
    for h, n, usual in zip(hours, counts, flags):
        if n:
            run = []  # a new list: the longest run so far may be the one that just ended
        elif usual or (count_unknown and usual is None):
            run.append(h)
            if len(run) > len(best):
                best = run
    return best


def _usual_lag(hours, end, flags) -> float | None:
    """Hours between the end of the last hour that usually has rows and the window end (None:
    no hour of the window usually has rows)."""
    last = [h for h, usual in zip(hours, flags) if usual]
    if not last:
        return None
    return round(max((end - last[-1]).total_seconds() / 3600 - 1, 0.0), 2)


def span(hours) -> str:
    """Hours as a person reads them: `2026-11-04T08..17, 2026-11-05T08..09`."""
    parts: list[list] = []
    for h in hours:
        if parts and h - parts[-1][1] == pd.Timedelta(hours=1) and h.date() == parts[-1][1].date():
            parts[-1][1] = h
        else:
            parts.append([h, h])
    text = [a.strftime(HOUR_KEY) + (f"..{b:%H}" if b != a else "") for a, b in parts]
    if len(text) > 6:  # a long outage: where it starts and where it ends
        text = text[:3] + [f"({len(text) - 5} more)"] + text[-2:]
    return ", ".join(text)


def profile(stats: dict, start, end, history=None) -> dict:
    """Table-level facts from a scan's summary (see sources.Scan.summary), judged against the
    table's rhythm in `history` (see usual_hours and volumes)."""
    t = load_config()["thresholds"]
    start, end = _utc(start), _utc(end)
    hours = window_hours(start, end)
    counts = list(hourly_counts(stats, start, end).values())
    flags, basis, learned = usual_hours(stats, start, end, history)
    longest = run = 0
    for n in counts:
        run = run + 1 if n == 0 else 0
        longest = max(longest, run)
    missing = _longest_empty_run(hours, counts, flags, count_unknown=False)
    unjudged = _longest_empty_run(hours, counts, flags, count_unknown=True)
    rows = stats["rows_in_window"]
    newest = _utc(stats["newest"]) if stats.get("newest") else None
    lag = round((end - (newest if newest is not None else start)).total_seconds() / 3600, 2)
    usual_lag = _usual_lag(hours, end, flags)
    unjudged_lag = _usual_lag(hours, end, [usual is not False for usual in flags])
    quarantined = stats["quarantined"]
    ratio = quarantined / (rows + quarantined) if rows + quarantined else 0.0
    past = volumes(history)
    baseline = float(pd.Series(past).median()) if past else None
    return {
        "rows_in_window": rows,
        "populated_hours_ratio": round(sum(1 for n in counts if n) / max(len(counts), 1), 3),
        "max_empty_hours": longest,
        "rhythm": basis,
        "rhythm_learned": learned,
        "usual_hours": sum(1 for usual in flags if usual),
        "unknown_hours": sum(1 for usual in flags if usual is None),
        "missing_hours": len(missing),
        "missing_span": span(missing),
        "unjudged_hours": len(unjudged),
        "unjudged_span": span(unjudged),
        "newest": newest.strftime("%Y-%m-%dT%H:%MZ") if newest is not None else None,
        "lag_hours": lag,
        "usual_lag_hours": usual_lag,
        "lag_over_usual_hours": (
            round(max(lag - usual_lag, 0.0), 2) if usual_lag is not None else 0.0
        ),
        "unjudged_lag_hours": unjudged_lag,
        "lag_over_unjudged_hours": (
            round(max(lag - unjudged_lag, 0.0), 2) if unjudged_lag is not None else 0.0
        ),
        "quarantined": quarantined,
        "quarantine_ratio": round(ratio, 4),
        "quarantine_excessive": bool(
            (quarantined >= t["quarantine_min_count"] and ratio > t["quarantine_max_ratio"])
            or ratio > t["quarantine_majority"]
        ),
        "volume_baseline": baseline,
        "volume_ratio": round(rows / baseline, 3) if baseline else None,
        **{f"type_{c}": k for c, k in stats.get("source_types", {}).items()},
    }


def completeness(facts: dict) -> str:
    """complete | incomplete (hours that usually have rows are empty, or the newest row is later
    than usual) | not judged (empty hours nothing is known about yet)."""
    t = load_config()["thresholds"]
    gap, delay = t["max_empty_hours"], t["ingestion_delay_hours"]
    if facts["missing_hours"] > gap or facts["lag_over_usual_hours"] > delay:
        return "incomplete"
    if facts["unjudged_hours"] > gap or facts["lag_over_unjudged_hours"] > delay:
        return NOT_JUDGED
    return "complete"


def incomplete(facts: dict) -> list[dict]:
    """The critical completeness failures alone (cheap, no GE): the DAG's extract waits on these.
    A window without any row is not_empty's to report: there is nothing to wait for."""
    if not facts["rows_in_window"]:
        return []
    cfg = load_config()
    t, sev = cfg["thresholds"], cfg["severity"]
    out = []
    if sev["no_gap"] == CRITICAL and facts["missing_hours"] > t["max_empty_hours"]:
        out.append(
            {"check": "no_gap", "column": "TimeGenerated", "observed": say("missing_hours", facts)}
        )
    if sev["fresh"] == CRITICAL and facts["lag_over_usual_hours"] > t["ingestion_delay_hours"]:
        out.append(
            {
                "check": "fresh",
                "column": "TimeGenerated",
                "observed": say("lag_over_usual_hours", facts),
            }
        )
    return out


def with_derived_columns(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Row-level facts GE has no expectation for, as boolean/text columns it can check."""
    out = frame.copy(deep=False)  # new columns only: under copy-on-write the frame is untouched
    if table == "AzureActivity":
        for col in ("CorrelationId", "Caller"):
            if col in out:
                out[f"{col}_is_not_empty"] = kql.kusto_str(out[col]) != ""
        if "Authorization" in out:
            out["Authorization_is_json_with_scope"] = kql.has_property(
                out["Authorization"], "scope"
            )
        if "ActivityStatusValue" in out:
            out["ActivityStatusValue_family"] = kql.kusto_str(
                out["ActivityStatusValue"]
            ).str.lower()
    # Column-at-a-time, each distinct text decided or parsed once (kql.is_object, has_property):
    # where UEBA flags many rows, per-row parsing was half of a run.
    if table == "BehaviorAnalytics" and "ActivityInsights" in out:
        out["ActivityInsights_is_object"] = kql.is_object(out["ActivityInsights"])
    return out


# --- suites: engine-neutral specs, evaluated by Great Expectations or natively --------------------


@dataclass(frozen=True)
class Spec:
    """One expectation: the GE class that checks it, its column and arguments, and our check name
    and severity (quality.yaml)."""

    check: str
    expectation: str
    column: str
    kwargs: dict
    severity: str


def profile_specs(table: str, columns: dict[str, str], facts: dict) -> list[Spec]:
    cfg = load_config()
    t, sev = cfg["thresholds"], dict(cfg["severity"])
    gap, delay = t["max_empty_hours"], t["ingestion_delay_hours"]
    # No row at all is critical unless the table's rhythm says this window is usually empty
    # (a business tenant's weekend); a warning while some of its hours were never seen yet.
    min_rows = 1
    if facts["rhythm_learned"] and not facts["usual_hours"]:
        sev["not_empty"], min_rows = WARNING, 1 if facts["unknown_hours"] else 0
    specs = [
        Spec(
            "not_empty",
            "ExpectColumnValuesToBeBetween",
            "rows_in_window",
            {"min_value": min_rows},
            sev["not_empty"],
        ),
        Spec(
            "no_gap",
            "ExpectColumnValuesToBeBetween",
            "missing_hours",
            {"max_value": gap},
            sev["no_gap"],
        ),
        Spec(
            "fresh",
            "ExpectColumnValuesToBeBetween",
            "lag_over_usual_hours",
            {"max_value": delay},
            sev["fresh"],
        ),
    ]
    # Empty hours nothing is known about yet (too little history, or an hour of the week not
    # seen yet): recorded, but they cannot prove an outage. Not repeated once the gap is proven.
    if facts["missing_hours"] <= gap:
        specs.append(
            Spec(
                "no_gap",
                "ExpectColumnValuesToBeBetween",
                "unjudged_hours",
                {"max_value": gap},
                WARNING,
            )
        )
    if facts["lag_over_usual_hours"] <= delay:
        specs.append(
            Spec(
                "fresh",
                "ExpectColumnValuesToBeBetween",
                "lag_over_unjudged_hours",
                {"max_value": delay},
                WARNING,
            )
        )
    specs.append(
        Spec(
            "quarantine_ratio",
            "ExpectColumnValuesToBeInSet",
            "quarantine_excessive",
            {"value_set": [False]},
            sev["quarantine_ratio"],
        )
    )
    if facts.get("volume_ratio") is not None:
        specs.append(
            Spec(
                "volume_drop",
                "ExpectColumnValuesToBeBetween",
                "volume_ratio",
                {"min_value": t["volume_min_ratio"]},
                sev["volume_drop"],
            )
        )
    for col, kind in columns.items():
        if kind != "dynamic" and f"type_{col}" in facts:
            specs.append(
                Spec(
                    "column_types",
                    "ExpectColumnValuesToBeInSet",
                    f"type_{col}",
                    {"value_set": ["timestamp" if kind == "datetime" else "string"]},
                    sev["column_types"],
                )
            )
    return specs


def rows_specs(table: str, columns: dict[str, str], start, end) -> list[Spec]:
    sev = load_config()["severity"]
    specs = [
        Spec("columns_exist", "ExpectColumnToExist", col, {}, sev["columns_exist"])
        for col in columns
    ]
    specs += [
        Spec(
            "time_not_null",
            "ExpectColumnValuesToNotBeNull",
            "TimeGenerated",
            {},
            sev["time_not_null"],
        ),
        # Bounds as tz-aware Timestamps in the column's zone: naive or date bounds fail silently.
        Spec(
            "time_in_window",
            "ExpectColumnValuesToBeBetween",
            "TimeGenerated",
            {"min_value": start, "max_value": end, "strict_max": True},
            sev["time_in_window"],
        ),
    ]
    if table == "AzureActivity":
        specs += [
            Spec(
                "correlation_id_not_empty",
                "ExpectColumnValuesToBeInSet",
                "CorrelationId_is_not_empty",
                {"value_set": [True]},
                sev["correlation_id_not_empty"],
            ),
            Spec(
                "caller_not_empty",
                "ExpectColumnValuesToBeInSet",
                "Caller_is_not_empty",
                {"value_set": [True]},
                sev["caller_not_empty"],
            ),
            Spec(
                "authorization_json_with_scope",
                "ExpectColumnValuesToBeInSet",
                "Authorization_is_json_with_scope",
                {"value_set": [True]},
                sev["authorization_json_with_scope"],
            ),
            Spec(
                "status_known_family",
                "ExpectColumnValuesToBeInSet",
                "ActivityStatusValue_family",
                {"value_set": list(STATUS_FAMILIES)},
                sev["status_known_family"],
            ),
        ]
    else:
        specs += [
            Spec(
                "activity_insights_object",
                "ExpectColumnValuesToBeInSet",
                "ActivityInsights_is_object",
                {"value_set": [True]},
                sev["activity_insights_object"],
            ),
            Spec(
                "upn_shaped_like_upn",
                "ExpectColumnValuesToMatchRegex",
                "UserPrincipalName",
                {"regex": UPN_PATTERN},
                sev["upn_shaped_like_upn"],
            ),
        ]
    return specs


# --- running them ---------------------------------------------------------------------------------

ENGINES = ("ge", "native")


def validate(
    table: str,
    frame: pd.DataFrame,
    stats: dict,
    columns: dict[str, str],
    start,
    end,
    history: dict | list[int] | None = None,
    docs_dir: Path | None = None,
    raise_on_failure: bool = True,
    engine: str = "ge",
    results_dir: Path | None = None,
) -> TableQuality:
    """Validate one table's window; raises DataQualityError when a critical check fails
    (IncompleteDataError when only completeness failed: waiting may fix it).

    engine "ge" runs the suites with Great Expectations (and builds Data Docs into `docs_dir`);
    "native" evaluates the same specs with pandas, without GE's ~2.5 s import (the CLI's fast
    path; tests hold the two to the same answers). The summary goes to
    `<results_dir or docs_dir>/<table>.validation.json`, with the history judged against
    (`history`: {"volumes": trailing rows in window, "profiles": trailing hourly profiles}, see
    pipeline._history; a plain list is taken as the volumes).
    """
    start, end = _utc(start), _utc(end)
    facts = profile(stats, start, end, history)
    checks = profile_specs(table, columns, facts)
    rows = (with_derived_columns(table, frame), rows_specs(table, columns, start, end))
    site = None
    if engine == "ge":
        context = _context()
        site = _docs_site(context, docs_dir)
        frames = (("profile", pd.DataFrame([facts]), checks), ("rows", *rows))
        results = [
            r
            for kind, data, specs in frames
            for r in _run_ge(context, table, kind, data, specs, site, frame.columns)
        ]
    elif engine == "native":
        results = _run_native_profile(table, facts, checks, frame.columns) + _run_native(
            table, "rows", *rows, frame.columns
        )
    else:
        raise UsageError(f"unknown validation engine {engine!r} (one of {ENGINES})")
    failures = [r for r in results if r["severity"] == CRITICAL]
    warnings = [r for r in results if r["severity"] == WARNING]
    status = "failed" if failures else "warnings" if warnings else "passed"
    docs = str(Path(docs_dir) / "index.html") if site else None
    quality = TableQuality(table, status, facts, failures, warnings, docs)
    report_dir = results_dir or docs_dir
    if report_dir:
        write_text(
            Path(report_dir) / f"{table}.validation.json",
            json.dumps(
                {"summary": quality.summary(), "profile": facts, "history": history},
                indent=2,
                default=str,
            ),
        )
    if failures and raise_on_failure:
        only_completeness = all(f["check"] in COMPLETENESS_CHECKS for f in failures)
        raise (IncompleteDataError if only_completeness else DataQualityError)(failures)
    return quality


def _run_ge(context, table, kind, data, specs, site, present_columns) -> list[dict]:
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction

    suite = gx.ExpectationSuite(name=f"{table}_{kind}")
    for spec in specs:
        suite.add_expectation(
            getattr(gx.expectations, spec.expectation)(
                column=spec.column,
                meta={"check": spec.check, "severity": spec.severity},
                **spec.kwargs,
            )
        )
    tag = uuid.uuid4().hex[:8]
    asset = context.data_sources.add_or_update_pandas(f"{table}_{kind}").add_dataframe_asset(
        f"{table}_{kind}_{tag}"
    )
    batch_definition = asset.add_batch_definition_whole_dataframe("window")
    if site is None:  # no Data Docs wanted: validate the batch directly, 10x cheaper
        results = [batch_definition.get_batch(batch_parameters={"dataframe": data}).validate(suite)]
    else:  # a checkpoint stores the result and renders it into this run's Data Docs
        suite.name = f"{suite.name}_{tag}"
        suite = context.suites.add(suite)
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(
                name=f"{table}_{kind}_{tag}", data=batch_definition, suite=suite
            )
        )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=f"{table}_{kind}_{tag}",
                validation_definitions=[definition],
                actions=[UpdateDataDocsAction(name="docs", site_names=[site])],
            )
        )
        results = list(checkpoint.run(batch_parameters={"dataframe": data}).run_results.values())
    out = []
    for result in results:
        for r in result.results:
            if r.success:
                continue
            cfg = r.expectation_config
            spec = Spec(
                cfg.meta["check"], cfg.type, cfg.kwargs.get("column"), {}, cfg.meta["severity"]
            )
            item = _finding(table, kind, spec, data, present_columns, r.result or {})
            if item:
                out.append(item)
    return out


def _run_native(table, kind, data, specs, present_columns) -> list[dict]:
    """The same expectations in pandas, with GE's rules: nulls are ignored by value checks."""
    out = []
    for spec in specs:
        if spec.expectation == "ExpectColumnToExist":
            ok, result = spec.column in data, {}
        elif spec.column not in data:
            continue  # GE errors on a missing column; reported once, as the missing column
        else:
            values = data[spec.column]
            if spec.expectation == "ExpectColumnValuesToNotBeNull":
                bad = values.isna()
            else:
                notna = values.notna()
                # no nulls (the common case): the column itself, not a masked copy of it
                present = values if notna.all() else values[notna]
                k = spec.kwargs
                if spec.expectation == "ExpectColumnValuesToBeBetween":
                    good = pd.Series(True, index=present.index)
                    if k.get("min_value") is not None:
                        good &= present >= k["min_value"]
                    if k.get("max_value") is not None:
                        good &= (
                            (present < k["max_value"])
                            if k.get("strict_max")
                            else (present <= k["max_value"])
                        )
                elif spec.expectation == "ExpectColumnValuesToBeInSet":
                    good = present.isin(k["value_set"])
                elif spec.expectation == "ExpectColumnValuesToMatchRegex":
                    # Python's re (not RE2: their \s and $ differ), once per distinct value
                    good = kql.python_search(present.astype("str"), k["regex"])
                else:
                    raise DetectionError(f"no native evaluation for {spec.expectation}")
                bad = ~good if present is values else ~good.reindex(values.index, fill_value=True)
            ok = not bad.any()
            result = (
                {}
                if ok
                else {
                    "unexpected_count": int(bad.sum()),
                    "partial_unexpected_list": list(values[bad].head(20)),
                }
            )
        if not ok:
            item = _finding(table, kind, spec, data, present_columns, result)
            if item:
                out.append(item)
    return out


def _run_native_profile(table, facts: dict, specs, present_columns) -> list[dict]:
    """The profile suite over its one row of facts, value by value, with _run_native's rules (a
    null value passes every check but not-null): a one-row DataFrame and a pandas mask per
    check cost ~5 ms a table, a sixth of a back-fill window's gate. A failed check is reported
    from the one-row frame, as _run_native reports it."""
    out, data = [], None
    for spec in specs:
        value, k = facts.get(spec.column), spec.kwargs
        if spec.expectation == "ExpectColumnToExist":
            ok = spec.column in facts
        elif spec.column not in facts:
            continue  # as _run_native: reported once, as the missing column
        elif spec.expectation == "ExpectColumnValuesToNotBeNull":
            ok = not _null(value)
        elif _null(value):
            ok = True
        elif spec.expectation == "ExpectColumnValuesToBeBetween":
            low, high = k.get("min_value"), k.get("max_value")
            ok = (low is None or value >= low) and (
                high is None or (value < high if k.get("strict_max") else value <= high)
            )
        elif spec.expectation == "ExpectColumnValuesToBeInSet":
            ok = value in k["value_set"]
        elif spec.expectation == "ExpectColumnValuesToMatchRegex":
            ok = re.search(k["regex"], str(value)) is not None
        else:
            raise DetectionError(f"no native evaluation for {spec.expectation}")
        if ok:
            continue
        data = pd.DataFrame([facts]) if data is None else data
        result = (
            {}
            if spec.expectation == "ExpectColumnToExist"
            else {"unexpected_count": 1, "partial_unexpected_list": [data[spec.column].iloc[0]]}
        )
        item = _finding(table, "profile", spec, data, present_columns, result)
        if item:
            out.append(item)
    return out


def _null(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _finding(table, kind, spec: Spec, data, present_columns, result: dict) -> dict | None:
    """A failed expectation as a person reads it; None for a check on a missing column (it is
    reported once, as the missing column)."""
    expectation = _snake(spec.expectation)
    column = spec.column
    if (
        kind == "rows"
        and expectation != "expect_column_to_exist"
        and column
        and _source_column(column) not in present_columns
    ):
        return None
    observed = _observed(result, expectation, data, column)
    source_column = _source_column(column)
    if kind == "profile" and column in PROFILE_FACTS:
        source_column = PROFILE_FACTS[column][0]
        observed = say(column, data.iloc[0])
    return {
        "table": table,
        "column": source_column,
        "check": spec.check,
        "severity": spec.severity,
        "expectation": expectation,
        "observed": observed,
    }


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() if name[:1].isupper() else name


def _late(facts) -> str:
    newest = f"newest row {facts['newest']}" if facts["newest"] else "no rows"
    return f"{newest}, {facts['lag_hours']} h before the window end"


# Profile facts, as a person reads them: (column they are about, how to say the value).
PROFILE_FACTS = {
    "rows_in_window": (None, lambda f: f"{f['rows_in_window']} rows in the window"),
    "missing_hours": (
        "TimeGenerated",
        lambda f: f"no rows {f['missing_span']}, {f['missing_hours']} hours that usually have rows",
    ),
    "unjudged_hours": (
        "TimeGenerated",
        lambda f: (
            f"no rows {f['unjudged_span']}, {f['unjudged_hours']} hours not judged: "
            f"no history for them yet (rhythm: {f['rhythm']})"
        ),
    ),
    "lag_over_usual_hours": (
        "TimeGenerated",
        lambda f: f"{_late(f)}; usually within {f['usual_lag_hours']} h",
    ),
    "lag_over_unjudged_hours": (
        "TimeGenerated",
        lambda f: (
            f"{_late(f)}; not judged: no history for the hours after it yet (rhythm: {f['rhythm']})"
        ),
    ),
    "quarantine_excessive": (
        None,
        lambda f: f"{f['quarantined']} records quarantined ({f['quarantine_ratio']:.1%})",
    ),
    "volume_ratio": (None, lambda f: f"{f['volume_ratio']} of the trailing runs' median"),
}


def say(fact: str, facts) -> str:
    """A profile fact as the observed value of a failed check."""
    return PROFILE_FACTS[fact][1](facts)


def _source_column(column: str | None) -> str | None:
    if column is None:
        return None
    for suffix in ("_is_not_empty", "_is_json_with_scope", "_family", "_is_object"):
        column = column.removesuffix(suffix)
    return column.removeprefix("type_") if column.startswith("type_") else column


def _observed(result: dict, check: str, data: pd.DataFrame, column):
    if check == "expect_column_to_exist":
        return "column missing"
    if "unexpected_count" in result and len(data) > 1:
        sample = [str(v) for v in (result.get("partial_unexpected_list") or [])[:3]]
        return f"{result['unexpected_count']} of {len(data)} rows, e.g. {sample}"
    if column in data and len(data) == 1:
        return data[column].iloc[0]
    return result.get("observed_value")


@lru_cache(maxsize=1)
def _context():
    """One ephemeral GE context per process (each one creates a temp docs folder)."""
    import os

    # A security product sends no usage analytics anywhere.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    try:  # no progress bars in task logs or on the CLI's stderr
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context.variables.progress_bars = ProgressBarsConfig(globally=False)
    except (ImportError, AttributeError):
        log.debug("could not disable GE progress bars")
    return context


def _docs_site(context, docs_dir: Path | None) -> str | None:
    """A Data Docs site writing to this run's folder."""
    if docs_dir is None:
        return None
    name = f"run_{uuid.uuid4().hex[:8]}"
    context.add_data_docs_site(
        site_name=name,
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(Path(docs_dir).resolve()),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    return name


def prefetch() -> None:
    """Import GE in a background thread while the scan runs (the import is ~2.5 s of CPU that
    would otherwise sit on the critical path)."""
    import threading

    threading.Thread(target=_context, daemon=True, name="ge-import").start()
