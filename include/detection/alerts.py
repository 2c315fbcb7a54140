"""Alerts from result rows, filled from the rule's YAML (Panther-style: plain functions + metadata).

Grouping (the rule's `eventGroupingSettings.aggregationKind`, or `grouping=`):

- `AlertPerExecution` (ours, the default): one alert per Run Command execution (CorrelationId,
  Caller, VM resource), carrying every UEBA row behind it;
- `SingleAlert` (Sentinel): one alert per run (query window) with every result row;
- `AlertPerResult` (Sentinel): one alert per result row.

The id depends only on what identifies the group (never on the window, except for SingleAlert,
whose group *is* the window), so the same execution seen in two overlapping 2-day windows, a
re-run or a backfill has the same id. `merge_alert` folds new evidence into a stored alert.

The alert is shaped after Sentinel's SecurityAlert: title, description, severity, tactics,
techniques, entities (Account Name+UPNSuffix, IP Address, AzureResource ResourceId+SubscriptionId),
custom details (each a list of distinct values, as Sentinel stores them), plus the evidence rows,
the window, the rule version, the data-quality status and a fingerprint of the evidence.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid

import pandas as pd

from .correlation import CONTEXT_COLUMNS, OUTPUT_COLUMNS
from .errors import UsageError
from .results import format_datetime, to_records
from .rule import Rule

# Namespace for alert ids (uuid5): stable across versions of this code.
ALERT_NAMESPACE = uuid.UUID("5b1f0f3e-2b7c-4f53-9a55-2f7c2d1e4a11")
EXECUTION_KEY = ["CorrelationId", "Caller", "ResourceId"]

PER_EXECUTION, SINGLE, PER_RESULT = "AlertPerExecution", "SingleAlert", "AlertPerResult"
GROUPINGS = (PER_EXECUTION, SINGLE, PER_RESULT)
DEFAULT_GROUPING = PER_EXECUTION

# Custom details the alert always carries besides the rule's `customDetails` (the UEBA insights
# behind the alert); a rule that maps the same key wins.
INSIGHT_DETAILS = {
    "UEBAActivityInsights": "UEBAActivityInsights",
    "UEBAUsersInsights": "UEBAUsersInsights",
}

QUALITY_ORDER = ("passed", "warnings", "failed")


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def alert_id(
    rule: Rule, correlation_id: str, caller: str, resource_id: str, start_time: str
) -> str:
    """AlertPerExecution: the execution's identity. Without a CorrelationId, executions are told
    apart by their start."""
    parts = [rule.id, correlation_id, caller, resource_id] + (
        [] if correlation_id else [start_time]
    )
    return str(uuid.uuid5(ALERT_NAMESPACE, "|".join(parts)))


def result_alert_id(rule: Rule, row: dict) -> str:
    """AlertPerResult: the execution plus the UEBA event. StartTime/EndTime/CallerIpAddress are
    left out: they are aggregates that an overlapping window can see differently."""
    parts = [
        rule.id,
        PER_RESULT,
        row["CorrelationId"],
        row["Caller"],
        row["ResourceId"],
        row["UEBAEventTime"],
        row["UEBAActionType"],
        row["UEBASourceIPLocation"],
        _canonical(row["UEBAActivityInsights"]),
        _canonical(row["UEBAUsersInsights"]),
    ]
    if not row["CorrelationId"]:
        parts.append(row["StartTime"])
    return str(uuid.uuid5(ALERT_NAMESPACE, "|".join(str(p) for p in parts)))


def single_alert_id(rule: Rule, window: dict) -> str:
    """SingleAlert: one alert per run, so the run's window is its identity."""
    return str(
        uuid.uuid5(ALERT_NAMESPACE, "|".join([rule.id, SINGLE, window["start"], window["end"]]))
    )


def fingerprint(evidence: list[dict]) -> str:
    """Hash of the evidence rows (the alert's inputs), order-free: tells a changed alert from a
    re-sent one."""
    rows = sorted(_canonical(r) for r in evidence)
    # surrogatepass: a value no store can hold must not crash the hash (the store replaces it)
    return hashlib.sha256("\n".join(rows).encode("utf-8", "surrogatepass")).hexdigest()


def grouping_of(rule: Rule, grouping: str | None = None) -> str:
    kind = (
        grouping
        or (rule.raw.get("eventGroupingSettings") or {}).get("aggregationKind")
        or DEFAULT_GROUPING
    )
    if kind not in GROUPINGS:
        raise UsageError(
            f"rule {rule.id}: unknown event grouping {kind!r} (use one of {', '.join(GROUPINGS)})"
        )
    return kind


def worst_quality(*statuses: str | None) -> str:
    """The data-quality status of an alert built from several tables (or merged from runs)."""
    known = [s for s in statuses if s]
    if not known:
        return "passed"
    return max(
        known, key=lambda s: QUALITY_ORDER.index(s) if s in QUALITY_ORDER else len(QUALITY_ORDER)
    )


def _utc(value) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts


def _render(template: str, row: dict) -> str:
    return re.sub(r"\{\{(\w+)\}\}", lambda m: str(row.get(m.group(1), "")), template)


def _distinct(values) -> list:
    seen: dict[str, object] = {}
    for v in values:
        if v is None or v == "":
            continue
        seen.setdefault(_canonical(v), v)
    return list(seen.values())


def entities(rule: Rule, rows: list[dict] | dict) -> list[dict]:
    """Sentinel entity mapping from the rule YAML (Account, IP, AzureResource), distinct over
    `rows` (a row needs the context column ResourceId for the AzureResource entity)."""
    if isinstance(rows, dict):
        rows = [rows]
    out: dict[str, dict] = {}
    for row in rows:
        for mapping in rule.entity_mappings:
            fields = {
                f["identifier"]: row.get(f["columnName"], "") or ""
                for f in mapping["fieldMappings"]
            }
            if any(fields.values()):
                entity = {"type": mapping["entityType"], **fields}
                out.setdefault(_canonical(entity), entity)
    return list(out.values())


def custom_details(rule: Rule, rows: list[dict]) -> dict:
    """Each custom detail as the list of its distinct values over `rows` (Sentinel's shape)."""
    mapping = {**INSIGHT_DETAILS, **rule.custom_details}
    return {name: _distinct(r.get(col) for r in rows) for name, col in mapping.items()}


def _sort_key(row: dict) -> tuple:
    return (row["UEBAEventTime"], row["StartTime"], _canonical(row))


def _alert(
    rule: Rule, grouping: str, alert_id_: str, rows: list[dict], window: dict, data_quality: str
) -> dict:
    """One alert from its rows (OUTPUT_COLUMNS + CONTEXT_COLUMNS, as JSON-ready records)."""
    rows = sorted(rows, key=_sort_key)
    evidence = [{c: r[c] for c in OUTPUT_COLUMNS} for r in rows]
    first = rows[0]
    executions = _distinct(r["CorrelationId"] for r in rows)
    one = grouping != SINGLE
    return {
        "id": alert_id_,
        "rule_id": rule.id,
        "rule_name": rule.name,
        "rule_version": rule.version,
        "grouping": grouping,
        "title": _render(rule.details_override.get("alertDisplayNameFormat", rule.name), first),
        "description": _render(
            rule.details_override.get("alertDescriptionFormat", rule.description), first
        ),
        "severity": rule.severity,
        "tactics": list(rule.tactics),
        "techniques": list(rule.techniques),
        "start_time": min(r["StartTime"] for r in rows),
        "end_time": max(r["EndTime"] for r in rows),
        "correlation_id": first["CorrelationId"] if one else None,
        "caller": first["Caller"] if one else None,
        "resource_id": first["ResourceId"] if one else None,
        "executions": executions,
        "entities": entities(rule, rows),
        "custom_details": custom_details(rule, rows),
        "window": window,
        "data_quality": data_quality,
        "evidence": evidence,
        "fingerprint": fingerprint(evidence),
    }


def build_alerts(
    result: pd.DataFrame,
    rule: Rule,
    start,
    end,
    data_quality: str = "passed",
    grouping: str | None = None,
    workspace: str | None = None,
) -> list[dict]:
    """Alerts from correlate()'s output (13 columns + context) for the window [start, end).

    `workspace` (an MSSP's several tenants): the workspace the rows came from. It is part of
    every alert id, so two tenants' executions never merge into one alert, and a custom detail
    (`Workspace`). Without it (one source), ids are as they always were."""
    grouping = grouping_of(rule, grouping)
    if result.empty:
        return []
    if workspace:
        return [
            _in_workspace(a, workspace)
            for a in build_alerts(result, rule, start, end, data_quality, grouping)
        ]
    window = {"start": format_datetime(_utc(start)), "end": format_datetime(_utc(end))}
    rows = to_records(result, OUTPUT_COLUMNS + CONTEXT_COLUMNS)
    groups: dict[str, list[dict]] = {}
    if grouping == SINGLE:
        groups[single_alert_id(rule, window)] = rows
    elif grouping == PER_RESULT:
        for row in rows:
            groups.setdefault(result_alert_id(rule, row), []).append(row)
    else:
        by_execution: dict[tuple, list[dict]] = {}
        for row in rows:
            by_execution.setdefault(tuple(row[k] for k in EXECUTION_KEY), []).append(row)
        for (correlation_id, caller, resource_id), members in by_execution.items():
            start_time = min(r["StartTime"] for r in members)
            groups.setdefault(
                alert_id(rule, correlation_id, caller, resource_id, start_time), []
            ).extend(members)
    alerts = [
        _alert(rule, grouping, i, members, window, data_quality) for i, members in groups.items()
    ]
    return sorted(alerts, key=lambda a: (a["start_time"], a["id"]))


def _in_workspace(alert: dict, workspace: str) -> dict:
    """The alert as seen in `workspace`: its id derived from the single-source id and the
    workspace (stable, and distinct per workspace), the workspace among its custom details."""
    return {
        **alert,
        "id": str(uuid.uuid5(ALERT_NAMESPACE, f"{alert['id']}|{workspace}")),
        "workspace": workspace,
        "custom_details": {**alert["custom_details"], "Workspace": [workspace]},
    }


def merge_evidence(old: list[dict], new: list[dict]) -> list[dict]:
    """Union of evidence rows (a later window may see more UEBA rows for the same execution)."""
    seen = {_canonical(r): r for r in old}
    for r in new:
        seen.setdefault(_canonical(r), r)
    return sorted(seen.values(), key=_sort_key)


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _merge_lists(old, new) -> list:
    return _distinct([*_as_list(old), *_as_list(new)])


def merge_alert(old: dict, new: dict) -> tuple[dict, bool]:
    """Fold a newly built alert into the stored one with the same id. Returns (alert, changed):
    unchanged evidence keeps the stored alert as it is (a re-run changes nothing)."""
    evidence = merge_evidence(old["evidence"], new["evidence"])
    digest = fingerprint(evidence)
    if digest == old.get("fingerprint"):
        return old, False
    merged = {
        **old,
        "evidence": evidence,
        "fingerprint": digest,
        "start_time": min(old["start_time"], new["start_time"]),
        "end_time": max(old.get("end_time") or new["end_time"], new["end_time"]),
        "executions": _merge_lists(old.get("executions", []), new.get("executions", [])),
        "entities": _merge_lists(old.get("entities", []), new.get("entities", [])),
        "custom_details": {
            k: _merge_lists(
                old.get("custom_details", {}).get(k), new.get("custom_details", {}).get(k)
            )
            for k in {**old.get("custom_details", {}), **new.get("custom_details", {})}
        },
        "window": new["window"],  # the window of the run that brought the new evidence
        "rule_version": new.get("rule_version", old.get("rule_version")),
        "data_quality": worst_quality(old.get("data_quality"), new.get("data_quality")),
    }
    return merged, True
