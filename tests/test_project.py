"""The project's own files: pins, Makefile, README, CI entry, the rule YAML (the compose file:
tests/deploy/test_compose.py)."""

import hashlib
import re

import pytest

from include.detection.rule import load_rule, parse_timespan
from tests.conftest import REPO

PINS = {
    "apache-airflow": "3.3.2",
    "great-expectations": "1.24.1",
    "pandas": "3.1.1",
    "pyarrow": "26.0.1",
}


def requirements() -> dict:
    out = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[re.sub(r"\[.*\]", "", name).lower()] = version
    return out


def test_requirements_are_exact_pins_including_the_decided_stack():
    reqs = requirements()
    assert all(v for v in reqs.values()), f"unpinned: {[k for k, v in reqs.items() if not v]}"
    for name, version in PINS.items():
        assert reqs[name] == version


def test_installed_versions_match_the_pins():
    from importlib.metadata import version

    for name, pinned in PINS.items():
        assert version(name) == pinned


def test_makefile_has_the_two_commands_and_install():
    text = (REPO / "Makefile").read_text()
    for target in ("install:", "run:", "test:", "bench:"):
        assert re.search(rf"^{target}", text, re.M), target
    assert re.search(r"^DATE \?= \d{4}-\d{2}-\d{2}$", text, re.M)


def test_readme_starts_with_make_run_and_make_test():
    text = (REPO / "README.md").read_text()
    first_block = re.search(r"```(?:bash|sh)?\n(.*?)```", text, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()]
    assert [c for c in commands if c][:2] == ["make run", "make test"]


def test_ci_runs_make_test():
    text = (REPO / ".ci" / "run").read_text()
    assert "make test" in text


# --- the rule as data (Elastic-style: schema, MITRE, query) ---------------------------------------

SEED_QUERY_SHA256 = "db9851bae166a7f71de77abeea71ceb4c53830e2df672ba787a51601b92a7e53"


def test_rule_yaml_has_the_metadata_the_dag_uses():
    rule = load_rule()
    assert rule.id == "11bda520-a965-4654-9a45-d09f372f71aa"
    assert rule.severity == "High"
    assert rule.query_frequency == parse_timespan("1d") and rule.query_period == parse_timespan(
        "2d"
    )
    assert rule.tactics == ("LateralMovement", "CredentialAccess")
    assert all(re.fullmatch(r"T\d{4}(\.\d{3})?", t) for t in rule.techniques)
    types = {
        m["entityType"]: {f["identifier"]: f["columnName"] for f in m["fieldMappings"]}
        for m in rule.entity_mappings
    }
    assert types["Account"] == {"Name": "AccountName", "UPNSuffix": "AccountUPNSuffix"}
    assert types["IP"] == {"Address": "CallerIpAddress"}
    assert types["AzureResource"]["SubscriptionId"] == "Subscription"


def test_rule_query_is_the_seed_query_verbatim():
    seed = REPO.parent / "shared" / "seed" / "000_22f6f402a3977712.txt"
    query = load_rule().query.strip()
    digest = hashlib.sha256(query.encode()).hexdigest()
    if seed.exists():
        text = seed.read_text()
        block = text.split("KQL Query", 1)[1].split("Analytic Rule Definition", 1)[0].strip()
        assert block == query
    assert digest == SEED_QUERY_SHA256, digest


@pytest.mark.parametrize(
    "text, hours",
    [("1d", 24), ("2d", 48), ("36h", 36), ("90m", 1.5), ("1.5h", 1.5)],
    ids=["1d", "2d", "36h", "90m", "1.5h"],
)
def test_parse_timespan_kusto_literals(text, hours):
    assert parse_timespan(text).total_seconds() == hours * 3600


@pytest.mark.parametrize(
    "text", ["2", "2w", "-1d", "0h", ""], ids=["no-unit", "weeks", "negative", "zero", "empty"]
)
def test_parse_timespan_rejects_other_text(text):
    from include.detection.errors import UsageError

    with pytest.raises(UsageError):
        parse_timespan(text)
