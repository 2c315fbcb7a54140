"""Alerts from result rows, filled from the rule's YAML (Panther-style: plain functions + metadata).

Default grouping: one alert per Run Command execution (CorrelationId, Caller, VM resource),
carrying every UEBA row behind it. The id depends only on what identifies that execution, so the
same execution seen in two overlapping 2-day windows, a re-run or a backfill has the same id.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid

import pandas as pd

from .correlation import OUTPUT_COLUMNS
from .results import format_datetime, to_records
from .rule import Rule

# Namespace for alert ids (uuid5): stable across versions of this code.
ALERT_NAMESPACE = uuid.UUID("5b1f0f3e-2b7c-4f53-9a55-2f7c2d1e4a11")
EXECUTION_KEY = ["CorrelationId", "Caller", "ResourceId"]


def alert_id(rule: Rule, correlation_id: str, caller: str, resource_id: str, start_time: str) -> str:
    # Without a CorrelationId, executions are told apart by their start.
    parts = [rule.id, correlation_id, caller, resource_id] + ([] if correlation_id else [start_time])
    return str(uuid.uuid5(ALERT_NAMESPACE, "|".join(parts)))


def fingerprint(evidence: list[dict]) -> str:
    """Hash of the evidence rows, order-free: tells a changed alert from a re-sent one."""
    rows = sorted(json.dumps(r, sort_keys=True, ensure_ascii=False) for r in evidence)
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


def _render(template: str, row: dict) -> str:
    return re.sub(r"\{\{(\w+)\}\}", lambda m: str(row.get(m.group(1), "")), template)


def entities(rule: Rule, row: dict) -> list[dict]:
    """Sentinel entity mapping from the rule YAML (Account, IP, AzureResource)."""
    out = []
    for mapping in rule.entity_mappings:
        fields = {f["identifier"]: row.get(f["columnName"], "") for f in mapping["fieldMappings"]}
        if any(fields.values()):
            out.append({"type": mapping["entityType"], **fields})
    return out


def build_alerts(result: pd.DataFrame, rule: Rule, start, end, data_quality: str = "passed") -> list[dict]:
    """One alert per execution; `result` is correlate()'s output (13 columns + context)."""
    if result.empty:
        return []
    alerts = []
    for key, rows in result.groupby(EXECUTION_KEY, sort=True, dropna=False):
        evidence = to_records(rows, OUTPUT_COLUMNS)
        first = {**evidence[0], "ResourceId": key[2]}
        start_time = min(r["StartTime"] for r in evidence)
        alerts.append({
            "id": alert_id(rule, key[0], key[1], key[2], start_time),
            "rule_id": rule.id,
            "rule_name": rule.name,
            "rule_version": rule.version,
            "severity": rule.severity,
            "title": _render(rule.details_override.get("alertDisplayNameFormat", rule.name), first),
            "description": _render(rule.details_override.get("alertDescriptionFormat",
                                                              rule.description), first),
            "tactics": list(rule.tactics),
            "techniques": list(rule.techniques),
            "correlation_id": key[0],
            "start_time": start_time,
            "entities": entities(rule, first),
            "custom_details": {name: first.get(col, "") for name, col in rule.custom_details.items()},
            "window": {"start": format_datetime(pd.Timestamp(start)),
                       "end": format_datetime(pd.Timestamp(end))},
            "data_quality": data_quality,
            "evidence": evidence,
            "fingerprint": fingerprint(evidence),
        })
    return alerts


def merge_evidence(old: list[dict], new: list[dict]) -> list[dict]:
    """Union of evidence rows (a later window may see more UEBA rows for the same execution)."""
    seen = {json.dumps(r, sort_keys=True): r for r in old}
    for r in new:
        seen.setdefault(json.dumps(r, sort_keys=True), r)
    return sorted(seen.values(), key=lambda r: (r["UEBAEventTime"], r["StartTime"],
                                                json.dumps(r, sort_keys=True)))
