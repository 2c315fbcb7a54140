"""Issue #9 acceptance: arbitrary text, bytes and nesting in every string and dynamic column of
both tables. `detect` never crashes: every hostile record is either read (and then the rule's own
KQL, run by duckdb-kql over what was read, gives exactly our result) or quarantined with a
reason; and on both alert stores every valid true positive of the window is stored and delivered.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from include.detection import pipeline, results
from include.detection.alerts import build_alerts
from include.detection.destinations import deliver_pending
from include.detection.store import AlertStore
from tests.factories import RULE, run_command, ueba_row
from tests.oracle import as_counter, describe_diff, kql_oracle, normalize_ours

END = "2026-11-01T00:00:00Z"
STRING_COLUMNS = {
    "AzureActivity": (
        "OperationNameValue",
        "Authorization",
        "CorrelationId",
        "Caller",
        "CallerIpAddress",
        "ActivityStatusValue",
    ),
    "BehaviorAnalytics": ("EventSource", "ActionType", "UserPrincipalName", "SourceIPLocation"),
}
DYNAMIC_COLUMNS = {"BehaviorAnalytics": ("ActivityInsights", "UsersInsights")}
# JSON text whose parse used to crash the correlation or the quality gate (kql.parse_json)
DEEP = "[" * 60_000
SURROGATE_SCOPE = (
    '{"scope": "/subscriptions/s/providers/Microsoft.Compute/virtualMachines/v\\udc80m"}'
)
TRUE_POSITIVES = [("tp-a@contoso.com", "tp-a"), ("tp-b@fabrikam.com", "tp-b")]

# Text of every kind: NUL and other controls, lone surrogates, bidi, astral, JSON- and SQL-ish.
hostile_text = st.one_of(
    st.text(st.characters(codec=None, blacklist_categories=()), max_size=30),
    st.sampled_from(
        [
            "\x00",
            "\ud800",
            "\udfff",
            "a\x00b",
            "\u202e",
            "\x1b[2J",
            "'; DROP TABLE",
            "$$",
            '{"scope": 1}',
            "virtualMachines",
            "Succeeded\x00",
            "\\u0000",
            "Azure AD",
            "True",
            "\ufffd",
            "𝕏" * 5,
            DEEP,
            SURROGATE_SCOPE,
        ]
    ),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | hostile_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3),
    max_leaves=8,
)
# A field's value: a string (the usual case), a JSON value of another type, or a nested object
field_values = st.one_of(hostile_text, hostile_text, json_values)


@st.composite
def hostile_record(draw, table: str):
    """A record of `table` inside the window with hostile values in some of its columns."""
    base = (
        dict(run_command("hostile", start="2026-10-31T11:00:00Z")[0])
        if table == "AzureActivity"
        else ueba_row(TimeGenerated="2026-10-31T10:30:00Z", UserPrincipalName="nobody@x.y")
    )
    columns = STRING_COLUMNS.get(table, ()) + DYNAMIC_COLUMNS.get(table, ())
    for column in draw(st.lists(st.sampled_from(columns), min_size=1, max_size=3, unique=True)):
        base[column] = draw(field_values)
    return base


@st.composite
def raw_line(draw):
    """A line that is not a clean JSON record: invalid UTF-8 inside a string or anywhere."""
    prefix = draw(st.binary(max_size=10))
    return draw(
        st.sampled_from(
            [
                b"garbage \xff\xfe not json",
                b'{"TimeGenerated": "2026-10-31T10:00:00Z", "Caller": "a\xffb"}',
                prefix + b"\xc3\x28" + prefix,
                b"\xed\xa0\x80",
            ]
        )
    )


def write_source(folder, activity: list, ueba: list, raw: list[bytes]):
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows, extra in (("AzureActivity", activity, raw), ("BehaviorAnalytics", ueba, [])):
        with open(folder / f"{name}.jsonl", "wb") as fh:
            for row in rows:  # surrogates as JSON escapes: what a producer would write
                fh.write(json.dumps(row, ensure_ascii=True).encode() + b"\n")
            for line in extra:
                fh.write(line.replace(b"\n", b" ") + b"\n")
    return folder


def true_positive_rows():
    activity, ueba = [], []
    for i, (caller, corr) in enumerate(TRUE_POSITIVES):
        activity += run_command(corr, Caller=caller, start=f"2026-10-31T1{i}:00:00Z")
        ueba.append(
            ueba_row(UserPrincipalName=caller, TimeGenerated=f"2026-10-31T{9 + i:02d}:40:00Z")
        )
    return activity, ueba


def oracle_applies(frames) -> bool:
    """The oracle is provably wrong on a few input classes (tests/test_differential.py): non-ASCII
    or control characters in Authorization / ActivityStatusValue, which `has` searches."""
    act = frames["AzureActivity"]
    for column in ("Authorization", "ActivityStatusValue"):
        for value in act[column].dropna():
            if not value.isascii() or any(ord(c) < 32 for c in value):
                return False
    return True


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """One SQLite and one PostgreSQL store for the whole run (each example's alerts are new)."""
    import uuid

    import psycopg

    from tests.conftest import require_service
    from tests.fakes.fixtures import PG_BASE, pg_schema_url

    require_service("PostgreSQL", "127.0.0.1", 5432)
    schema = f"fuzz_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    urls = {
        "sqlite": str(tmp_path_factory.mktemp("fuzz") / "alerts.db"),
        "postgresql": pg_schema_url(schema),
    }
    yield urls
    with psycopg.connect(PG_BASE, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")),
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate]
    if os.environ.get("FUZZ_NO_SHRINK")
    else list(Phase),
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(
    hostile_activity=st.lists(hostile_record("AzureActivity"), max_size=4),
    hostile_ueba=st.lists(hostile_record("BehaviorAnalytics"), max_size=4),
    raw=st.lists(raw_line(), max_size=2),
)
def test_hostile_values_never_crash_detect_nor_cost_a_valid_alert(
    tmp_path_factory, stores, hostile_activity, hostile_ueba, raw
):
    folder = tmp_path_factory.mktemp("src")
    tp_activity, tp_ueba = true_positive_rows()
    source = write_source(folder, tp_activity + hostile_activity, tp_ueba + hostile_ueba, raw)

    found = pipeline.detect(source, END, engine="native", raise_on_failure=False)

    lines = {
        "AzureActivity": len(tp_activity) + len(hostile_activity) + len(raw),
        "BehaviorAnalytics": len(tp_ueba) + len(hostile_ueba),
    }
    for table, scan in found.scans.items():
        assert scan.rows_read == lines[table], f"{table}: a record was neither read nor counted"
        assert all(q["reason"] for q in scan.quarantine)
    assert found.result is not None, found.failures
    frames = {t: s.frame for t, s in found.scans.items()}
    ours = normalize_ours(found.result)
    if oracle_applies(frames):
        oracle = kql_oracle(frames["AzureActivity"], frames["BehaviorAnalytics"])
        assert as_counter(ours) == as_counter(oracle), describe_diff(ours, oracle)
    callers = {r["Caller"] for r in ours}
    assert {c for c, _ in TRUE_POSITIVES} <= callers, "a valid true positive was lost"

    alerts = build_alerts(found.result, RULE, found.start, found.end, found.data_quality)
    wanted = {a["id"] for a in alerts if a["caller"] in dict(TRUE_POSITIVES)}
    assert len(wanted) == len(TRUE_POSITIVES)
    for url in stores.values():
        with AlertStore(url) as store:
            store.upsert(alerts)
            report = deliver_pending(
                store,
                ["file"],
                settings={"file": {"folder": str(folder / "tickets")}},
                alert_ids=sorted(wanted),
            )
            assert report["file"]["failed"] == 0
            stored = {a["id"]: a for a in store.alerts()}
            assert wanted <= set(stored)
            assert all(stored[i]["tickets"] for i in wanted), "every valid alert was delivered"


REPRODUCTIONS = {
    "authorization with an escaped lone surrogate": (
        "AzureActivity",
        "Authorization",
        SURROGATE_SCOPE,
    ),
    "authorization nested 60,000 deep": ("AzureActivity", "Authorization", DEEP),
    "insights nested 60,000 deep": ("BehaviorAnalytics", "ActivityInsights", DEEP),
    "insights with an escaped lone surrogate": (
        "BehaviorAnalytics",
        "ActivityInsights",
        '{"ActionUncommonlyPerformedByUser": "\\udc80"}',
    ),
}


@pytest.mark.parametrize("table,column,value", REPRODUCTIONS.values(), ids=REPRODUCTIONS.keys())
def test_json_text_that_crashed_the_run_is_read_as_kusto_would(tmp_path, table, column, value):
    tp_activity, tp_ueba = true_positive_rows()
    if table == "AzureActivity":  # a whole succeeded execution, so the rule reaches parse_json
        rows = (
            run_command(
                "hostile",
                Caller="tp-a@contoso.com",
                start="2026-10-31T10:20:00Z",
                **{column: value},
            ),
            [],
        )
    else:
        rows = (
            [],
            [
                ueba_row(
                    TimeGenerated="2026-10-31T10:00:00Z",
                    UserPrincipalName="x@y.z",
                    **{column: value},
                )
            ],
        )
    source = write_source(tmp_path, tp_activity + rows[0], tp_ueba + rows[1], [])
    found = pipeline.detect(source, END, engine="native", raise_on_failure=False)
    assert found.result is not None, found.failures
    assert {c for c, _ in TRUE_POSITIVES} <= set(found.result["Caller"])
    results.write(found.result, tmp_path / "result.jsonl")  # every value is valid text
    (tmp_path / "result.jsonl").read_text(encoding="utf-8")
