"""The data-quality gate: each check with passing and failing data."""

import json

import pandas as pd
import pytest

from include.detection import quality
from include.detection.errors import DataQualityError, IncompleteDataError
from tests.factories import RULE, activity, activity_row, ueba, ueba_row

START, END = pd.Timestamp("2026-10-30T00:00:00Z"), pd.Timestamp("2026-11-01T00:00:00Z")
_VALIDATE = quality.validate


@pytest.fixture(autouse=True, params=quality.ENGINES)
def engine(request, monkeypatch):
    """Every test runs with Great Expectations and with the native evaluator: same answers."""
    monkeypatch.setattr(quality, "validate", lambda *a, **k: _VALIDATE(*a, **{"engine": request.param, **k}))
    return request.param
AA, BA = RULE.inputs["AzureActivity"], RULE.inputs["BehaviorAnalytics"]


def stats(hours_with_rows=range(48), per_hour=20, quarantined=0, newest=None, types=None, table=AA):
    hourly = {(START + pd.Timedelta(hours=h)).strftime("%Y-%m-%dT%H"): per_hour for h in hours_with_rows}
    last = max(hours_with_rows) if hourly else None
    return {"rows_in_window": per_hour * len(hourly), "hourly": hourly,
            "newest": newest or (None if last is None else
                                 (START + pd.Timedelta(hours=last, minutes=59)).isoformat()),
            "quarantined": quarantined,
            "source_types": types or {c: ("timestamp" if k == "datetime" else "string")
                                      for c, k in table.items()}}


def check(table="AzureActivity", frame=None, st=None, history=None):
    frame = activity([activity_row()]) if frame is None and table == "AzureActivity" else \
        ueba([ueba_row()]) if frame is None else frame
    cols = AA if table == "AzureActivity" else BA
    return quality.validate(table, frame, st or stats(table=cols), cols, START, END, history,
                            raise_on_failure=False)


def names(result, level="failures"):
    return sorted({f["check"] for f in getattr(result, level)})


def test_complete_valid_window_passes_and_says_complete():
    result = check()
    assert result.status == "passed" and result.completeness == "complete"
    assert "AzureActivity: passed, complete; 960 rows in window" in result.line()


@pytest.mark.parametrize("st, failed", [
    (stats(hours_with_rows=[]), ["not_empty"]),
    (stats(hours_with_rows=[h for h in range(48) if not 12 <= h < 36]), ["no_gap"]),
    (stats(hours_with_rows=range(45)), ["fresh"]),
    (stats(quarantined=50), ["quarantine_ratio"]),
    (stats(types={**{c: "string" for c in AA}, "TimeGenerated": "timestamp", "Caller": "int64"}),
     ["column_types"]),
], ids=["empty-table", "day-long-hole", "newest-rows-missing", "quarantine-over-1pct", "wrong-type"])
def test_structural_problems_are_critical(st, failed):
    result = check(st=st)
    assert names(result) == failed and result.status == "failed"


@pytest.mark.parametrize("st, warned", [
    (stats(quarantined=5), []),
    (stats(hours_with_rows=[10, 11], per_hour=10), ["fresh", "no_gap"]),
], ids=["few-bad-lines-below-min-count", "sparse-table-gap-not-judged"])
def test_sparse_or_small_problems_do_not_block_detection(st, warned):
    result = check(st=st)
    assert result.failures == [] and names(result, "warnings") == warned


def test_sparse_table_is_reported_as_not_judged():
    assert check(st=stats(hours_with_rows=[10], per_hour=3)).completeness == "not judged (too sparse)"


def test_volume_drop_against_trailing_median_is_a_warning():
    result = check(history=[2000, 1900, 2100])
    assert names(result, "warnings") == ["volume_drop"] and result.failures == []
    assert result.profile["volume_ratio"] == pytest.approx(960 / 2000, abs=1e-3)
    assert check(history=[1000, 900]).warnings == []


def test_missing_column_is_critical_and_named_once():
    frame = activity([activity_row()]).drop(columns="Caller")
    result = check(frame=frame)
    assert [(f["column"], f["check"], f["observed"]) for f in result.failures] == [
        ("Caller", "columns_exist", "column missing")]


def test_rows_outside_the_window_are_critical():
    result = check(frame=activity([activity_row(TimeGenerated="2026-11-01T00:00:00Z")]))
    assert names(result) == ["time_in_window"]


@pytest.mark.parametrize("row, warned", [
    (activity_row(CorrelationId=""), ["correlation_id_not_empty"]),
    (activity_row(CorrelationId=None), ["correlation_id_not_empty"]),
    (activity_row(Caller=""), ["caller_not_empty"]),
    (activity_row(Authorization="not json virtualMachines"), ["authorization_json_with_scope"]),
    (activity_row(Authorization=json.dumps({"action": "x"})), ["authorization_json_with_scope"]),
    (activity_row(ActivityStatusValue="Rejected"), ["status_known_family"]),
    (activity_row(ActivityStatusValue="SUCCESS"), []),
    (activity_row(ActivityStatusValue="failure"), []),
], ids=["empty-correlation-id", "null-correlation-id", "empty-caller", "authorization-not-json",
        "authorization-without-scope", "unknown-status", "status-any-case", "new-family"])
def test_run_command_row_oddities_are_warnings(row, warned):
    result = check(frame=activity([activity_row(), row]))
    assert result.failures == [] and names(result, "warnings") == warned


@pytest.mark.parametrize("row, warned", [
    (ueba_row(ActivityInsights='"not an object"'), ["activity_insights_object"]),
    (ueba_row(ActivityInsights="{broken"), ["activity_insights_object"]),
    (ueba_row(UserPrincipalName="alice"), ["upn_shaped_like_upn"]),
    (ueba_row(UserPrincipalName="Alice@Contoso.com"), []),
], ids=["insights-json-string", "insights-invalid", "upn-without-domain", "upn-ok"])
def test_ueba_row_oddities_are_warnings(row, warned):
    result = check("BehaviorAnalytics", frame=ueba([ueba_row(), row]))
    assert result.failures == [] and names(result, "warnings") == warned


def test_critical_failure_raises_typed_error_naming_table_column_check_observed():
    with pytest.raises(DataQualityError) as err:
        quality.validate("AzureActivity", activity([activity_row()]), stats(types={
            **{c: "string" for c in AA}, "TimeGenerated": "timestamp", "Caller": "int64"}),
            AA, START, END)
    assert "AzureActivity.Caller: column_types failed (observed: int64)" in str(err.value)
    assert not isinstance(err.value, IncompleteDataError)


def test_only_completeness_failures_raise_incomplete_data():
    with pytest.raises(IncompleteDataError, match="no_gap"):
        quality.validate("AzureActivity", activity([activity_row()]),
                         stats(hours_with_rows=[h for h in range(48) if not 10 <= h < 20]),
                         AA, START, END)


def test_results_are_written_per_run_and_data_docs_with_ge(tmp_path, engine):
    quality.validate("AzureActivity", activity([activity_row()]), stats(), AA, START, END,
                     docs_dir=tmp_path / "docs")
    saved = json.loads((tmp_path / "docs" / "AzureActivity.validation.json").read_text())
    assert saved["summary"]["status"] == "passed"
    # Data Docs are Great Expectations' rendering; the native evaluator has none by design
    assert (tmp_path / "docs" / "index.html").exists() == (engine == "ge")


def test_incomplete_facts_without_ge():
    facts = quality.profile(stats(hours_with_rows=range(40)), START, END)
    assert [m["check"] for m in quality.incomplete(facts)] == ["no_gap", "fresh"]
    assert quality.incomplete(quality.profile(stats(), START, END)) == []
