"""Issue #10 acceptance point 2, at a small scale and not timed (bench/remote.py measures it on
the M lake): through the Log Analytics query API (tests/fakes/loganalytics.py, evaluating the
KQL with duckdb-kql) the rows pulled are exactly the window's rows passing each side's first
`where` plus the profile's summary rows, also when a cap forces slices to be split, and the
result equals `detect` over the same lake as a folder.

The expected counts come from pandas over the lake's Parquet files read here, not from the
library's folder source: a wrong pushed-down filter, window or projection would show."""

import json

import pandas as pd
import pytest

from bench import lake as lakes
from bench import remote
from include.detection import pipeline
from tests.factories import RULE
from tests.fakes.loganalytics import TOKEN, WORKSPACE, FakeLogAnalytics
from tests.oracle import as_counter, normalize_ours

# UEBA flags 1 in 8 sign-ins: hundreds of BehaviorAnalytics candidates in a small lake, so both
# sides have slices fuller than the cap.
SPEC = lakes.LakeSpec(rows_per_day=20_000, uncommon_share=lakes.HIGH_UNCOMMON_SHARE)
CAP = 7  # above a 6 h slice's 6 hourly profile rows, below the fullest slices' candidates
END = pd.Timestamp(SPEC.end)
START = END - RULE.query_period
TABLES = sorted(RULE.inputs)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    path, _ = lakes.ensure_lake(tmp_path_factory.mktemp("lakes"), SPEC, log=lambda *_: None)
    return path


@pytest.fixture(scope="module")
def frames(lake):
    """Every day of the lake (the first day lies before the window), the rule's columns only."""
    return {t: pd.read_parquet(lake / t, columns=list(RULE.inputs[t])) for t in TABLES}


def _uncommon(text) -> bool:
    """ActivityInsights.ActionUncommonlyPerformedByUser == "True", the string, case-sensitive."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return False
    return isinstance(value, dict) and value.get("ActionUncommonlyPerformedByUser") == "True"


@pytest.fixture(scope="module")
def want(frames):
    """Per table: rows in the window, rows passing the side's first `where` there, and the
    non-empty hours (one profile row each)."""
    out = {}
    for table, frame in frames.items():
        inside = frame[(frame["TimeGenerated"] >= START) & (frame["TimeGenerated"] < END)]
        if table == "AzureActivity":
            keep = [
                isinstance(v, str)
                and v.casefold() == "microsoft.compute/virtualmachines/runcommand/action"
                for v in inside["OperationNameValue"]
            ]
        else:
            keep = [
                source == "Azure AD" and _uncommon(insights)
                for source, insights in zip(inside["EventSource"], inside["ActivityInsights"])
            ]
        out[table] = {
            "in_window": len(inside),
            "candidates": sum(keep),
            "hours": inside["TimeGenerated"].dt.floor("h").nunique(),
            "outside": len(frame) - len(inside),
        }
    return out


@pytest.fixture(scope="module")
def served(frames):
    fake = FakeLogAnalytics({WORKSPACE: frames}).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def folder_result(lake):
    return pipeline.detect(str(lake), END, engine="native").result


def test_the_small_lake_exercises_the_filters(want, folder_result):
    """Without rows outside the window, candidates in every table and a non-empty result, the
    equalities below would prove little."""
    for table in TABLES:
        assert want[table]["outside"] > 0
        assert 0 < want[table]["candidates"] < want[table]["in_window"] / 10
    assert len(folder_result) > 0


@pytest.mark.parametrize("cap", [None, CAP], ids=["no cap", f"cap {CAP}"])
def test_only_candidates_and_the_profile_cross_the_wire_and_the_result_is_the_folders(
    served, want, folder_result, cap
):
    figures, detection = remote.measure(served, WORKSPACE, TOKEN, END, cap)
    for table in TABLES:
        kinds = figures["tables"][table]["kinds"]
        rows, profile, schema = kinds["rows"], kinds["profile"], kinds["schema"]
        assert figures["tables"][table]["rows_in_window"] == want[table]["in_window"]
        assert rows["rows_accepted"] == want[table]["candidates"], table
        assert profile["rows_accepted"] == want[table]["hours"], table
        assert schema["rows_crossed"] == 0
        truncated = sum(k["truncated"] for k in kinds.values())
        if cap is None:
            assert truncated == 0
        else:
            # every slice fuller than the cap came back partial and was split: the discarded
            # partial answers are the only rows beyond the candidates and the profile
            assert rows["truncated"] > 0 and profile["truncated"] == 0, table
            assert rows["largest_answer"] == cap
        crossed = sum(k["rows_crossed"] for k in kinds.values())
        assert crossed == want[table]["candidates"] + want[table]["hours"] + (cap or 0) * truncated
    assert figures["other_queries"] == []
    for lo, hi in figures["windows"]:
        assert START <= pd.Timestamp(lo) < pd.Timestamp(hi) <= END
    assert as_counter(normalize_ours(detection.result)) == as_counter(normalize_ours(folder_result))
