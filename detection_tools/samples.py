"""A rule's sample cases, read from `include/rules/<rule>.samples.yaml` (Panther's `Tests:`).

Each case holds the rows it plants in AzureActivity and BehaviorAnalytics, the expected result
(`alert`, and the result rows it gives or the correlation step that rejects it) and the reason.
Times are relative to the file's `anchor` day (`+<days>d HH:MM:SS[.fffffff]`, UTC) so the same
cases can be placed on any day: `load(anchor=day)` resolves them from `day` instead, exactly
(100 ns ticks, Log Analytics' resolution). A dynamic value written as a YAML mapping (the
Authorization blob, the insights) becomes its compact JSON text, as the tables hold it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import yaml

RULES_DIR = Path(__file__).resolve().parents[1] / "include" / "rules"
DEFAULT_RULE = "runcommand_ueba_breach"
TABLES = ("AzureActivity", "BehaviorAnalytics")
_WHEN = re.compile(r"^\+(\d+)d (\d\d):(\d\d):(\d\d)(?:\.(\d{1,7}))?$")
_NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class Case:
    name: str
    alert: bool
    reason: str
    rejected_by: str | None  # the correlation step that empties it (near misses)
    results: tuple[tuple[str, pd.Timestamp], ...]  # (CorrelationId, UEBAEventTime) per row
    rows: dict  # table -> list of row dicts, times as UTC Timestamps


def path_of(rule: str = DEFAULT_RULE) -> Path:
    return RULES_DIR / f"{rule}.samples.yaml"


def resolve(when: str, anchor: date) -> pd.Timestamp:
    """'+1d 09:00:00.5' -> anchor + 1 day + 9 h + 0.5 s, UTC, exact to 100 ns."""
    m = _WHEN.match(str(when))
    if not m:
        raise ValueError(f"sample time {when!r} is not '+<days>d HH:MM:SS[.fffffff]'")
    days, h, mi, s, frac = m.groups()
    ns = ((int(days) * 24 + int(h)) * 60 + int(mi)) * 60 + int(s)
    ns = ns * _NS_PER_S + int((frac or "").ljust(7, "0")) * 100
    return pd.Timestamp(anchor, tz="UTC") + pd.Timedelta(ns, unit="ns")


def _value(v):
    return json.dumps(v, separators=(",", ":")) if isinstance(v, (dict, list)) else v


def _row(raw: dict, anchor: date) -> dict:
    return {k: resolve(v, anchor) if k == "TimeGenerated" else _value(v) for k, v in raw.items()}


def load(rule: str = DEFAULT_RULE, anchor: date | None = None) -> list[Case]:
    """The rule's sample cases, in file order, times resolved from `anchor` (default: the
    file's own anchor day)."""
    raw = yaml.safe_load(path_of(rule).read_text(encoding="utf-8"))
    anchor = anchor or date.fromisoformat(str(raw["anchor"]))
    cases = []
    for c in raw["cases"]:
        expect = c["expect"]
        cases.append(
            Case(
                name=c["name"],
                alert=bool(expect["alert"]),
                reason=" ".join(c["reason"].split()),
                rejected_by=expect.get("rejected_by"),
                results=tuple(
                    (r["CorrelationId"], resolve(r["UEBAEventTime"], anchor))
                    for r in expect.get("results", ())
                ),
                rows={t: [_row(r, anchor) for r in c["rows"].get(t, ())] for t in TABLES},
            )
        )
    return cases


def anchor_of(rule: str = DEFAULT_RULE) -> date:
    raw = yaml.safe_load(path_of(rule).read_text(encoding="utf-8"))
    return date.fromisoformat(str(raw["anchor"]))
