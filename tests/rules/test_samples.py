"""Every sample case of the rule (include/rules/<rule>.samples.yaml) through both engines.

Each case alone: `correlation.correlate` gives exactly its expected result rows (identified by the
run's CorrelationId and the UEBA row's time), a near miss is emptied by the very step its file
names (the steps run one by one, in the KQL's order), and the rule's KQL run by duckdb-kql
(tests/oracle.py) gives the same alert rows and, row for row, the same result as `correlate`.
"""

from __future__ import annotations

import pandas as pd
import pytest

from detection_tools import samples
from include.detection import correlation as cor
from tests.oracle import (
    ACTIVITY_SCHEMA,
    UEBA_SCHEMA,
    as_counter,
    describe_diff,
    kql_oracle,
    normalize_ours,
)

CASES = samples.load()
LEFT_STEPS = (
    cor.where_operation_is_run_command,
    cor.where_authorization_has_virtual_machines,
    cor.summarize_by_correlation,
    cor.where_list_has_any_success,
    cor.extend_scope_parts,
    cor.project_run_commands,
)
RIGHT_STEPS = (
    cor.where_azure_ad_uncommon_action,
    cor.project_ueba,
    cor.where_upn_and_location_not_empty,
)
STEP_NAMES = {s.__name__ for s in LEFT_STEPS + RIGHT_STEPS} | {
    cor.join_inner_on_joinkey.__name__,
    cor.where_start_between_ueba_window.__name__,
}
US = pd.Timedelta(microseconds=1)


def frame(rows: list[dict], schema: dict[str, str], floor_us: bool = False) -> pd.DataFrame:
    """The case's rows typed as the sources give them (datetime64[ns, UTC], `str`); a column the
    case does not write (UsersInsights) is null."""
    data = {}
    for col, kind in schema.items():
        values = [r.get(col) for r in rows]
        if kind == "datetime":
            times = pd.Series(values, dtype="datetime64[ns, UTC]")
            data[col] = times.dt.floor("us") if floor_us else times
        else:
            data[col] = pd.Series(values, dtype="str")
    return pd.DataFrame(data)


def tables(case: samples.Case, floor_us: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    return (
        frame(case.rows["AzureActivity"], ACTIVITY_SCHEMA, floor_us),
        frame(case.rows["BehaviorAnalytics"], UEBA_SCHEMA, floor_us),
    )


def first_empty_step(activity: pd.DataFrame, ueba: pd.DataFrame) -> str | None:
    """The first step of the query, in the KQL's order, after which no row is left (None: the
    case reaches the result)."""
    left, right = activity, ueba
    for step in LEFT_STEPS:
        left = step(left)
        if left.empty:
            return step.__name__
    for step in RIGHT_STEPS:
        right = step(right)
        if right.empty:
            return step.__name__
    joined = cor.join_inner_on_joinkey(left, right)
    if joined.empty:
        return cor.join_inner_on_joinkey.__name__
    if cor.where_start_between_ueba_window(joined).empty:
        return cor.where_start_between_ueba_window.__name__
    return None


def start_times(case: samples.Case) -> dict[pd.Timestamp, str]:
    """StartTime (the run's first event) -> CorrelationId: how an oracle row names its run."""
    runs = frame(case.rows["AzureActivity"], ACTIVITY_SCHEMA).groupby("CorrelationId")
    return {t.floor("us"): cid for cid, t in runs["TimeGenerated"].min().items()}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_correlate_gives_the_expected_result(case):
    result = cor.correlate(*tables(case))
    got = sorted(zip(result["CorrelationId"], result["UEBAEventTime"]))
    assert got == sorted(case.results), case.reason
    assert bool(len(result)) is case.alert, case.reason


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_named_step_rejects_the_near_miss(case):
    assert (case.rejected_by is None) is case.alert, "a near miss names its step, an alert none"
    assert case.rejected_by is None or case.rejected_by in STEP_NAMES, case.rejected_by
    assert first_empty_step(*tables(case)) == case.rejected_by, case.reason


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_rule_kql_on_duckdb_kql_gives_the_expected_result(case):
    """duckdb-kql's TIMESTAMP is microseconds: the rows go in floored to the microsecond, which
    must keep each run's distance to each UEBA row (the window's edges are what cases test)."""
    activity, ueba = tables(case)
    starts = activity.groupby("CorrelationId")["TimeGenerated"].min()
    for start in starts:
        for t in ueba["TimeGenerated"]:
            assert start.floor("us") - t.floor("us") == start - t, "flooring moves a window edge"
    activity_us, ueba_us = tables(case, floor_us=True)
    oracle = kql_oracle(activity_us, ueba_us)
    run_of = start_times(case)
    got = sorted(
        (run_of[pd.Timestamp(r["StartTime"])], pd.Timestamp(r["UEBAEventTime"])) for r in oracle
    )
    assert got == sorted((cid, t.floor("us")) for cid, t in case.results), case.reason
    ours = normalize_ours(cor.correlate(activity_us, ueba_us))
    assert as_counter(ours) == as_counter(oracle), describe_diff(ours, oracle)


def test_cases_are_named_once_and_cover_both_outcomes():
    names = [c.name for c in CASES]
    assert len(set(names)) == len(names)
    assert all(n.startswith("tp_" if c.alert else "nm_") for n, c in zip(names, CASES))
    assert sum(c.alert for c in CASES) >= 5 and sum(not c.alert for c in CASES) >= 8
    # every step that can reject on its own is exercised by some near miss
    assert {c.rejected_by for c in CASES} - {None} == {
        "where_authorization_has_virtual_machines",
        "where_list_has_any_success",
        "where_azure_ad_uncommon_action",
        "where_upn_and_location_not_empty",
        "join_inner_on_joinkey",
        "where_start_between_ueba_window",
    }
