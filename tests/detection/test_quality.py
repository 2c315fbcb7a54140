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
    monkeypatch.setattr(
        quality, "validate", lambda *a, **k: _VALIDATE(*a, **{"engine": request.param, **k})
    )
    return request.param


AA, BA = RULE.inputs["AzureActivity"], RULE.inputs["BehaviorAnalytics"]


def stats(hours_with_rows=range(48), per_hour=20, quarantined=0, newest=None, types=None, table=AA):
    hourly = {
        (START + pd.Timedelta(hours=h)).strftime("%Y-%m-%dT%H"): per_hour for h in hours_with_rows
    }
    last = max(hours_with_rows) if hourly else None
    return {
        "rows_in_window": per_hour * len(hourly),
        "hourly": hourly,
        "newest": newest
        or (None if last is None else (START + pd.Timedelta(hours=last, minutes=59)).isoformat()),
        "quarantined": quarantined,
        "source_types": types
        or {c: ("timestamp" if k == "datetime" else "string") for c, k in table.items()},
    }


def check(table="AzureActivity", frame=None, st=None, history=None):
    frame = (
        activity([activity_row()])
        if frame is None and table == "AzureActivity"
        else ueba([ueba_row()])
        if frame is None
        else frame
    )
    cols = AA if table == "AzureActivity" else BA
    return quality.validate(
        table, frame, st or stats(table=cols), cols, START, END, history, raise_on_failure=False
    )


def names(result, level="failures"):
    return sorted({f["check"] for f in getattr(result, level)})


def test_complete_valid_window_passes_and_says_complete():
    result = check()
    assert result.status == "passed" and result.completeness == "complete"
    assert "AzureActivity: passed, complete; 960 rows in window" in result.line()


@pytest.mark.parametrize(
    "st, failed",
    [
        (stats(hours_with_rows=[]), ["not_empty"]),
        (stats(hours_with_rows=[h for h in range(48) if not 12 <= h < 36]), ["no_gap"]),
        (stats(hours_with_rows=range(45)), ["fresh"]),
        (stats(quarantined=50), ["quarantine_ratio"]),
        (
            stats(
                types={**{c: "string" for c in AA}, "TimeGenerated": "timestamp", "Caller": "int64"}
            ),
            ["column_types"],
        ),
    ],
    ids=[
        "empty-table",
        "day-long-hole",
        "newest-rows-missing",
        "quarantine-over-1pct",
        "wrong-type",
    ],
)
def test_structural_problems_are_critical(st, failed):
    result = check(st=st)
    assert names(result) == failed and result.status == "failed"


@pytest.mark.parametrize(
    "st, warned",
    [
        (stats(quarantined=5), []),
        (stats(hours_with_rows=[10, 11], per_hour=10), ["fresh", "no_gap"]),
    ],
    ids=["few-bad-lines-below-min-count", "sparse-table-gap-not-judged"],
)
def test_sparse_or_small_problems_do_not_block_detection(st, warned):
    result = check(st=st)
    assert result.failures == [] and names(result, "warnings") == warned


def test_sparse_table_is_reported_as_not_judged():
    assert check(st=stats(hours_with_rows=[10], per_hour=3)).completeness == quality.NOT_JUDGED


def test_volume_drop_against_trailing_median_is_a_warning():
    result = check(history=[2000, 1900, 2100])
    assert names(result, "warnings") == ["volume_drop"] and result.failures == []
    assert result.profile["volume_ratio"] == pytest.approx(960 / 2000, abs=1e-3)
    assert check(history=[1000, 900]).warnings == []


def test_missing_column_is_critical_and_named_once():
    frame = activity([activity_row()]).drop(columns="Caller")
    result = check(frame=frame)
    assert [(f["column"], f["check"], f["observed"]) for f in result.failures] == [
        ("Caller", "columns_exist", "column missing")
    ]


def test_rows_outside_the_window_are_critical():
    result = check(frame=activity([activity_row(TimeGenerated="2026-11-01T00:00:00Z")]))
    assert names(result) == ["time_in_window"]


@pytest.mark.parametrize(
    "row, warned",
    [
        (activity_row(CorrelationId=""), ["correlation_id_not_empty"]),
        (activity_row(CorrelationId=None), ["correlation_id_not_empty"]),
        (activity_row(Caller=""), ["caller_not_empty"]),
        (activity_row(Authorization="not json virtualMachines"), ["authorization_json_with_scope"]),
        (
            activity_row(Authorization=json.dumps({"action": "x"})),
            ["authorization_json_with_scope"],
        ),
        (activity_row(ActivityStatusValue="Rejected"), ["status_known_family"]),
        (activity_row(ActivityStatusValue="SUCCESS"), []),
        (activity_row(ActivityStatusValue="failure"), []),
    ],
    ids=[
        "empty-correlation-id",
        "null-correlation-id",
        "empty-caller",
        "authorization-not-json",
        "authorization-without-scope",
        "unknown-status",
        "status-any-case",
        "new-family",
    ],
)
def test_run_command_row_oddities_are_warnings(row, warned):
    result = check(frame=activity([activity_row(), row]))
    assert result.failures == [] and names(result, "warnings") == warned


@pytest.mark.parametrize(
    "row, warned",
    [
        (ueba_row(ActivityInsights='"not an object"'), ["activity_insights_object"]),
        (ueba_row(ActivityInsights="{broken"), ["activity_insights_object"]),
        (ueba_row(UserPrincipalName="alice"), ["upn_shaped_like_upn"]),
        (ueba_row(UserPrincipalName="Alice@Contoso.com"), []),
    ],
    ids=["insights-json-string", "insights-invalid", "upn-without-domain", "upn-ok"],
)
def test_ueba_row_oddities_are_warnings(row, warned):
    result = check("BehaviorAnalytics", frame=ueba([ueba_row(), row]))
    assert result.failures == [] and names(result, "warnings") == warned


def test_critical_failure_raises_typed_error_naming_table_column_check_observed():
    with pytest.raises(DataQualityError) as err:
        quality.validate(
            "AzureActivity",
            activity([activity_row()]),
            stats(
                types={**{c: "string" for c in AA}, "TimeGenerated": "timestamp", "Caller": "int64"}
            ),
            AA,
            START,
            END,
        )
    assert "AzureActivity.Caller: column_types failed (observed: int64)" in str(err.value)
    assert not isinstance(err.value, IncompleteDataError)


def test_only_completeness_failures_raise_incomplete_data():
    with pytest.raises(IncompleteDataError, match="no_gap"):
        quality.validate(
            "AzureActivity",
            activity([activity_row()]),
            stats(hours_with_rows=[h for h in range(48) if not 10 <= h < 20]),
            AA,
            START,
            END,
        )


def test_results_are_written_per_run_and_data_docs_with_ge(tmp_path, engine):
    quality.validate(
        "AzureActivity",
        activity([activity_row()]),
        stats(),
        AA,
        START,
        END,
        docs_dir=tmp_path / "docs",
    )
    saved = json.loads((tmp_path / "docs" / "AzureActivity.validation.json").read_text())
    assert saved["summary"]["status"] == "passed"
    # Data Docs are Great Expectations' rendering; the native evaluator has none by design
    assert (tmp_path / "docs" / "index.html").exists() == (engine == "ge")


def test_incomplete_facts_without_ge():
    facts = quality.profile(stats(hours_with_rows=range(40)), START, END)
    assert [m["check"] for m in quality.incomplete(facts)] == ["no_gap", "fresh"]
    assert quality.incomplete(quality.profile(stats(), START, END)) == []


# --- completeness against the table's own rhythm --------------------------------------------
# 2026-11-02 is a Monday. A business tenant's BehaviorAnalytics has rows 08-18 UTC on weekdays.

DAY = pd.Timedelta(days=1)


def office(h) -> bool:
    return h.dayofweek < 5 and 8 <= h.hour < 18


def always(h) -> bool:
    return True


def without(has_rows, start, end):
    """`has_rows` with no rows in [start, end)."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    return lambda h: has_rows(h) and not start <= h < end


def hourly(start, end, has_rows, per_hour=12) -> dict:
    return {
        h.strftime("%Y-%m-%dT%H"): per_hour
        for h in pd.date_range(start, end, freq="h", inclusive="left")
        if has_rows(h)
    }


def scan(end, has_rows, table=BA, **over) -> dict:
    """A scan's stats for the 2-day window ending at `end`."""
    counts = hourly(end - 2 * DAY, end, has_rows)
    last = max(counts, default=None)
    newest = last and (pd.Timestamp(last, tz="UTC") + pd.Timedelta(minutes=59)).isoformat()
    types = {c: ("timestamp" if k == "datetime" else "string") for c, k in table.items()}
    return {
        "rows_in_window": sum(counts.values()),
        "hourly": counts,
        "quarantined": 0,
        "newest": newest,
        "source_types": types,
        **over,
    }


def past(end, has_rows, runs=14, skip=0, status="passed") -> dict:
    """The history the store gives for `end`: daily 2-day runs before it, newest first."""
    ends = [end - (skip + i) * DAY for i in range(1, runs + 1)]
    return {
        "volumes": [],
        "profiles": [
            {
                "window_end": e.isoformat(),
                "status": status,
                "newest": None,
                "hourly": quality.hourly_counts(
                    {"hourly": hourly(e - 2 * DAY, e, has_rows)}, e - 2 * DAY, e
                ),
            }
            for e in ends
        ],
    }


def judge(end, st, history=None, table="BehaviorAnalytics"):
    end = pd.Timestamp(end)
    cols = BA if table == "BehaviorAnalytics" else AA
    rows = [ueba_row(TimeGenerated=st["newest"])] if st["newest"] else []
    frame = (
        ueba(rows)
        if table == "BehaviorAnalytics"
        else activity([activity_row(TimeGenerated=st["newest"])] if st["newest"] else [])
    )
    return quality.validate(
        table, frame, st, cols, end - 2 * DAY, end, history, raise_on_failure=False
    )


def findings(result, level="failures"):
    return [(f["check"], f["observed"]) for f in getattr(result, level)]


@pytest.mark.parametrize(
    "end",
    ["2026-11-18", "2026-11-21", "2026-11-22", "2026-11-23", "2026-11-24"],
    ids=["mon-tue", "thu-fri", "fri-sat", "weekend-without-rows", "sun-mon"],
)
def test_quiet_nights_and_weekends_of_a_business_table_are_no_gap(end):
    end = pd.Timestamp(end, tz="UTC")
    result = judge(end, scan(end, office), past(end, office))
    assert result.failures == [] and result.warnings == []
    assert result.completeness == "complete"


@pytest.mark.parametrize(
    "end, checks",
    [
        ("2026-11-19", ["no_gap", "fresh"]),
        ("2026-11-20", ["no_gap"]),
    ],
    ids=["missing-day-is-the-last", "missing-day-is-the-first"],
)
def test_a_working_day_without_rows_fails_naming_the_table_and_the_day(end, checks):
    end = pd.Timestamp(end, tz="UTC")
    st = scan(end, without(office, "2026-11-18T00:00Z", "2026-11-19T00:00Z"))
    result = judge(end, st, past(end, office))
    assert [f["check"] for f in result.failures] == checks
    assert (
        result.failures[0]["observed"]
        == "no rows 2026-11-18T08..17, 10 hours that usually have rows"
    )
    assert result.completeness == "incomplete"
    with pytest.raises(IncompleteDataError) as err:
        quality.validate(
            "BehaviorAnalytics",
            ueba([ueba_row(TimeGenerated=st["newest"])]),
            st,
            BA,
            end - 2 * DAY,
            end,
            past(end, office),
        )
    assert (
        "BehaviorAnalytics.TimeGenerated: no_gap failed (observed: no rows 2026-11-18T08..17, "
        "10 hours that usually have rows)" in str(err.value)
    )


def test_the_newest_row_is_late_only_against_the_usual_newest_row():
    end = pd.Timestamp("2026-11-19", tz="UTC")  # Wed's rows end at 18:00
    on_time = judge(end, scan(end, office), past(end, office))
    late = judge(
        end, scan(end, without(office, "2026-11-18T14:00Z", "2026-11-19T00:00Z")), past(end, office)
    )
    assert on_time.profile["usual_lag_hours"] == 6.0 and on_time.failures == []
    assert findings(late) == [
        (
            "fresh",
            "newest row 2026-11-18T13:59Z, 10.02 h before the window end; usually within 6.0 h",
        )
    ]


@pytest.mark.parametrize(
    "runs, judged",
    [(0, False), (2, False), (3, True)],
    ids=["no-history", "two-runs", "three-runs"],
)
def test_until_there_is_history_quiet_hours_are_warnings(runs, judged):
    end = pd.Timestamp("2026-11-19", tz="UTC")
    st = scan(end, without(office, "2026-11-18T00:00Z", "2026-11-19T00:00Z"))
    result = judge(end, st, past(end, office, runs=runs, skip=6))  # Mon-Wed a week before
    assert (sorted(f["check"] for f in result.failures) == ["fresh", "no_gap"]) == judged
    assert (sorted(w["check"] for w in result.warnings) == ["fresh", "no_gap"]) != judged
    assert result.completeness == ("incomplete" if judged else quality.NOT_JUDGED)
    if not judged:
        assert "not judged: no history for them yet" in result.warnings[0]["observed"]


def test_runs_that_failed_are_no_rhythm():
    end = pd.Timestamp("2026-11-19", tz="UTC")
    st = scan(end, without(office, "2026-11-18T00:00Z", "2026-11-19T00:00Z"))
    assert judge(end, st, past(end, office, status="failed")).failures == []


@pytest.mark.parametrize("history", [None, "dense"], ids=["first-run", "with-history"])
def test_a_table_with_rows_every_hour_fails_on_a_seven_hour_hole(history):
    end = pd.Timestamp("2026-11-19", tz="UTC")
    st = scan(end, without(always, "2026-11-17T09:00Z", "2026-11-17T16:00Z"), table=AA)
    result = judge(end, st, past(end, always) if history else None, table="AzureActivity")
    assert findings(result) == [
        ("no_gap", "no rows 2026-11-17T09..15, 7 hours that usually have rows")
    ]
    one_less = scan(end, without(always, "2026-11-17T09:00Z", "2026-11-17T15:00Z"), table=AA)
    assert (
        judge(end, one_less, past(end, always) if history else None, table="AzureActivity").failures
        == []
    )


@pytest.mark.parametrize(
    "history, level",
    [
        (None, "failures"),
        ("a-week", None),
        ("three-weekdays", "warnings"),
    ],
    ids=["no-history-critical", "usually-empty-passes", "hours-not-seen-yet-warn"],
)
def test_a_window_without_rows(history, level):
    end = pd.Timestamp("2026-11-23", tz="UTC")  # Saturday and Sunday
    hist = {
        None: None,
        "a-week": past(end, office, runs=7),
        "three-weekdays": past(end, office, runs=3, skip=1),
    }[history]
    result = judge(end, scan(end, office), hist)
    assert result.profile["rows_in_window"] == 0
    not_empty = [
        (f["check"], f["observed"])
        for f in result.failures + result.warnings
        if f["check"] == "not_empty"
    ]
    assert not_empty == ([] if level is None else [("not_empty", "0 rows in the window")])
    if level:
        assert [f["check"] for f in getattr(result, level)][0] == "not_empty"


def test_ingestion_metadata_says_which_hours_should_have_rows():
    """A source that knows what should have arrived (expected_hourly) needs no history."""
    end = pd.Timestamp("2026-11-19", tz="UTC")
    expected = hourly(end - 2 * DAY, end, office)
    st = scan(
        end, without(office, "2026-11-18T00:00Z", "2026-11-19T00:00Z"), expected_hourly=expected
    )
    assert [f["check"] for f in judge(end, st).failures] == ["no_gap", "fresh"]
    quiet = scan(end, office, expected_hourly=expected)
    result = judge(end, quiet)
    assert result.failures == result.warnings == []
    assert result.profile["rhythm"] == "ingestion metadata"


def test_the_extract_waits_on_the_same_rhythm():
    end = pd.Timestamp("2026-11-19", tz="UTC")
    start = end - 2 * DAY
    quiet = quality.profile(scan(end, office), start, end, past(end, office))
    gone = quality.profile(
        scan(end, without(office, "2026-11-18T00:00Z", "2026-11-19T00:00Z")),
        start,
        end,
        past(end, office),
    )
    assert quality.incomplete(quiet) == []
    assert [(m["check"], m["observed"]) for m in quality.incomplete(gone)] == [
        ("no_gap", "no rows 2026-11-18T08..17, 10 hours that usually have rows"),
        (
            "fresh",
            "newest row 2026-11-17T17:59Z, 30.02 h before the window end; usually within 6.0 h",
        ),
    ]


RHYTHM_CASES = {
    "missing-working-day": (
        "2026-11-19",
        without(office, "2026-11-18T00:00Z", "2026-11-19T00:00Z"),
        "office",
    ),
    "weekend": ("2026-11-23", office, "office"),
    "learning": ("2026-11-19", office, None),
    "dense-hole": (
        "2026-11-19",
        without(always, "2026-11-17T09:00Z", "2026-11-17T16:00Z"),
        "always",
    ),
}


@pytest.mark.parametrize("case", list(RHYTHM_CASES), ids=list(RHYTHM_CASES))
def test_great_expectations_and_native_agree_on_rhythm(case):
    end, has_rows, rhythm = RHYTHM_CASES[case]
    end = pd.Timestamp(end, tz="UTC")
    st = scan(end, has_rows)
    history = past(end, {"office": office, "always": always}[rhythm]) if rhythm else None
    frame = ueba([ueba_row(TimeGenerated=st["newest"])] if st["newest"] else [])
    results = [
        _VALIDATE(
            "BehaviorAnalytics",
            frame,
            st,
            BA,
            end - 2 * DAY,
            end,
            history,
            raise_on_failure=False,
            engine=e,
        )
        for e in quality.ENGINES
    ]
    ge, native = (
        [(f["check"], f["severity"], f["observed"]) for f in r.failures + r.warnings]
        for r in results
    )
    assert ge == native and results[0].status == results[1].status


@pytest.mark.parametrize(
    "hours, text",
    [
        (pd.date_range("2026-11-11T08:00Z", "2026-11-11T17:00Z", freq="h"), "2026-11-11T08..17"),
        (
            pd.date_range("2026-11-10T22:00Z", "2026-11-11T01:00Z", freq="h"),
            "2026-11-10T22..23, 2026-11-11T00..01",
        ),
        (
            [pd.Timestamp("2026-11-11T08:00Z"), pd.Timestamp("2026-11-11T10:00Z")],
            "2026-11-11T08, 2026-11-11T10",
        ),
        (
            pd.date_range("2026-11-01T04:00Z", "2026-11-09T02:00Z", freq="h"),
            "2026-11-01T04..23, 2026-11-02T00..23, 2026-11-03T00..23, (4 more), 2026-11-08T00..23, "
            "2026-11-09T00..02",
        ),
    ],
    ids=["one-working-day", "across-midnight", "hours-apart", "a-long-outage-by-its-ends"],
)
def test_missing_hours_are_named_by_day_and_hour(hours, text):
    assert quality.span(hours) == text


# --- the profile suite, value by value --------------------------------------------------------

PROFILE_CASES = {
    "healthy": {},
    "empty window": {"rows_in_window": 0, "missing_hours": 48, "lag_over_usual_hours": 48.0},
    "gap and late": {"missing_hours": 7, "lag_over_usual_hours": 9.5},
    "volume dropped": {"volume_ratio": 0.01, "volume_baseline": 5000.0},
    "volume unknown (null)": {"volume_ratio": None},
    "quarantine excessive": {"quarantine_excessive": True},
    "a column of another type": {"type_Caller": "int64"},
    "a fact missing": {"drop": "lag_over_unjudged_hours"},
    "a null fact a check reads": {"missing_hours": None, "lag_over_usual_hours": float("nan")},
}


@pytest.mark.parametrize("case", list(PROFILE_CASES), ids=list(PROFILE_CASES))
def test_native_profile_checks_equal_those_over_a_one_row_frame(case, engine):
    """The native gate checks the profile's facts value by value (no one-row DataFrame per
    check): the same findings, observed values included, as _run_native over that frame."""
    facts = quality.profile(stats(), START, END)
    change = dict(PROFILE_CASES[case])
    drop = change.pop("drop", None)
    facts.update(change)
    specs = quality.profile_specs("AzureActivity", AA, {**facts, "missing_hours": 0})
    if drop:
        del facts[drop]
    present = pd.Index(list(AA))
    by_value = quality._run_native_profile("AzureActivity", facts, specs, present)
    by_frame = quality._run_native(
        "AzureActivity", "profile", pd.DataFrame([facts]), specs, present
    )
    assert by_value == by_frame
    failing = ("empty window", "gap and late", "volume dropped", "quarantine excessive")
    assert bool(by_value) == (case in (*failing, "a column of another type"))
