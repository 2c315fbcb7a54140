"""The rule as data: loads include/rules/<name>.yaml, the single source of its metadata."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from pathlib import Path

import yaml

from .errors import UsageError

# libyaml when PyYAML was built with it (the wheels are): 10x faster than the pure-Python loader
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
RULES_DIR = Path(__file__).resolve().parent.parent / "rules"
DEFAULT_RULE = "runcommand_ueba_breach"

# Longest query period or wait this code takes (Kusto's scheduled rules stop at 14 days; a hunt
# over a year is run as one window per day, not as one window).
MAX_SPAN = timedelta(days=366)
_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(d|h|m|s|ms|min)\s*$")
_UNIT = {
    "d": "days",
    "h": "hours",
    "m": "minutes",
    "min": "minutes",
    "s": "seconds",
    "ms": "milliseconds",
}


def parse_timespan(text: str) -> timedelta:
    """Kusto timespan literal (`2d`, `36h`, `90m`, `1.5h`) to a timedelta."""
    m = _SPAN.match(str(text))
    if not m:
        raise UsageError(f"not a Kusto timespan: {text!r} (expected e.g. 2d, 36h, 90m)")
    try:
        span = timedelta(**{_UNIT[m.group(2)]: float(m.group(1))})
    except OverflowError:
        span = MAX_SPAN * 2
    if span <= timedelta(0):
        raise UsageError(f"timespan must be positive: {text!r}")
    if span > MAX_SPAN:  # a window is profiled hour by hour: a typo must not exhaust memory
        raise UsageError(f"timespan {text!r} is longer than {MAX_SPAN.days} days")
    return span


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    description: str
    severity: str
    version: str
    query_frequency: timedelta
    query_period: timedelta
    tactics: tuple[str, ...]
    techniques: tuple[str, ...]
    query: str
    output_columns: tuple[str, ...]
    output_types: dict
    inputs: dict  # table -> {column: type}
    entity_mappings: list
    custom_details: dict
    details_override: dict
    raw: dict

    @property
    def tags(self) -> list[str]:
        return [*self.tactics, *self.techniques]

    @property
    def cron(self) -> str:
        """The cron expression for queryFrequency; only whole days and hours are schedulable."""
        hours = self.query_frequency.total_seconds() / 3600
        if hours == 24:
            return "0 0 * * *"
        if hours < 24 and 24 % hours == 0:
            return f"0 */{int(hours)} * * *"
        raise UsageError(
            f"rule {self.id}: queryFrequency {self.query_frequency} is not schedulable"
        )


@lru_cache(maxsize=None)
def load_rule(name: str = DEFAULT_RULE) -> Rule:
    path = Path(name) if name.endswith((".yaml", ".yml")) else RULES_DIR / f"{name}.yaml"
    try:
        raw = yaml.load(path.read_text(), Loader=YAML_LOADER)
    except FileNotFoundError:
        raise UsageError(f"rule file not found: {path}") from None
    required = [
        "id",
        "name",
        "severity",
        "queryFrequency",
        "queryPeriod",
        "query",
        "outputColumns",
        "inputs",
    ]
    missing = [k for k in required if k not in raw]
    if missing:
        raise UsageError(f"rule file {path} lacks {', '.join(missing)}")
    return Rule(
        id=raw["id"],
        name=raw["name"],
        description=" ".join(str(raw.get("description", "")).split()).strip("'"),
        severity=raw["severity"],
        version=str(raw.get("version", "1.0.0")),
        query_frequency=parse_timespan(raw["queryFrequency"]),
        query_period=parse_timespan(raw["queryPeriod"]),
        tactics=tuple(raw.get("tactics", [])),
        techniques=tuple(raw.get("relevantTechniques", [])),
        query=raw["query"],
        output_columns=tuple(c["name"] for c in raw["outputColumns"]),
        output_types={c["name"]: c["type"] for c in raw["outputColumns"]},
        inputs=raw["inputs"],
        entity_mappings=raw.get("entityMappings", []),
        custom_details=raw.get("customDetails", {}),
        details_override=raw.get("alertDetailsOverride", {}),
        raw=raw,
    )
