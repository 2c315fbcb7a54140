"""Completeness judged against the table's own rhythm (issue #9, point 7), end to end.

A business tenant: AzureActivity has rows every hour, BehaviorAnalytics only 08-18 UTC on
weekdays. Daily `run`s over 2-day windows must pass through quiet nights and weekends, and fail,
naming the table and the day, when a working day has no rows - on SQLite and PostgreSQL stores.
"""

from __future__ import annotations

import pandas as pd
import pytest

from include.detection import cli, pipeline
from include.detection.errors import IncompleteDataError
from include.detection.store import open_store
from tests.detection.test_cli import NOISE, write_jsonl
from tests.factories import RULE, activity_row, run_command, ueba_row

FIRST_DAY, LAST_DAY = pd.Timestamp("2026-11-02", tz="UTC"), pd.Timestamp("2026-11-16", tz="UTC")
DAY = pd.Timedelta(days=1)
# (day, user): a Run Command at 10:00 after a suspicious Azure AD sign-in at 09:30
TRUE_POSITIVES = [("2026-11-03", "ann"), ("2026-11-05", "bob"), ("2026-11-10", "cem")]
MISSING_DAY = "2026-11-11"  # a Wednesday in the second week


def iso(t: pd.Timestamp) -> str:
    return t.isoformat().replace("+00:00", "Z")


def tenant(folder, missing_day: str | None = None):
    """Two weeks of the business tenant's exports as JSONL; BehaviorAnalytics without
    `missing_day` when given."""
    hours = pd.date_range(FIRST_DAY, LAST_DAY, freq="h", inclusive="left")
    activity = [
        activity_row(**NOISE, TimeGenerated=iso(h + pd.Timedelta(minutes=m)))
        for h in hours
        for m in (5, 35)
    ]
    office = [
        h
        for h in hours
        if h.dayofweek < 5 and 8 <= h.hour < 18 and h.strftime("%Y-%m-%d") != missing_day
    ]
    ueba = [
        ueba_row(EventSource="Device logons", TimeGenerated=iso(h + pd.Timedelta(minutes=m)))
        for h in office
        for m in (10, 40)
    ]
    for day, user in TRUE_POSITIVES:
        activity += run_command(
            f"tp-{user}", start=f"{day}T10:00:00Z", Caller=f"{user}@contoso.com"
        )
        if day != missing_day:
            ueba.append(
                ueba_row(TimeGenerated=f"{day}T09:30:00Z", UserPrincipalName=f"{user}@contoso.com")
            )
    return write_jsonl(folder, activity, ueba)


def daily_ends(first: str, last: str) -> list[str]:
    return [iso(t) for t in pd.date_range(first, last, freq="D", tz="UTC")]


@pytest.fixture
def store(store_url, detection_home, monkeypatch):
    monkeypatch.setenv("DETECTION_ALERT_STORE", store_url)
    return store_url


def run(source, end, capsys) -> tuple[int, str]:
    code = cli.main(["run", "--source", str(source), "--end", end])
    return code, capsys.readouterr().err


def test_daily_runs_pass_through_quiet_nights_and_weekends(tmp_path, store, capsys):
    source = tenant(tmp_path / "source")
    outcomes = {end: run(source, end, capsys) for end in daily_ends("2026-11-04", "2026-11-13")}
    assert {end: code for end, (code, _) in outcomes.items()} == dict.fromkeys(outcomes, 0), {
        end: err for end, (code, err) in outcomes.items() if code
    }
    # Monday's window (Saturday and Sunday) has no BehaviorAnalytics row: no outage, no failure
    monday, friday = outcomes["2026-11-09T00:00:00Z"][1], outcomes["2026-11-13T00:00:00Z"][1]
    assert "BehaviorAnalytics: 203 rows read (jsonl), 0 in window" in monday
    # once a week of runs is known, a working-day window is judged complete
    assert "data quality: BehaviorAnalytics: passed, complete" in friday
    assert cli.main(["alerts", "--format", "jsonl"]) == 0
    alerts = capsys.readouterr().out.splitlines()
    assert len(alerts) == len(TRUE_POSITIVES)
    with open_store() as s:
        assert sorted(a["correlation_id"] for a in s.alerts()) == ["tp-ann", "tp-bob", "tp-cem"]
        assert all(len(a["tickets"]) == 1 for a in s.alerts())


def test_a_working_day_without_rows_fails_the_windows_covering_it(tmp_path, store, capsys):
    source = tenant(tmp_path / "source", missing_day=MISSING_DAY)
    outcomes = {end: run(source, end, capsys) for end in daily_ends("2026-11-04", "2026-11-14")}
    failed = {end: err for end, (code, err) in outcomes.items() if code}
    assert {end: outcomes[end][0] for end in failed} == {
        "2026-11-12T00:00:00Z": 3,
        "2026-11-13T00:00:00Z": 3,
    }, failed
    for err in failed.values():
        assert (
            "BehaviorAnalytics.TimeGenerated: no_gap failed (observed: no rows "
            "2026-11-11T08..17, 10 hours that usually have rows)"
        ) in err
        assert "AzureActivity" not in err.split("error:")[1]
    # the failed runs are kept as failed: the next windows still know Wednesday has rows
    with open_store() as s:
        profiles = s.trailing_profiles(RULE.id, "BehaviorAnalytics", "2026-11-15", 28)
    assert "2026-11-12T00:00:00+00:00" not in [p["window_end"] for p in profiles]


def test_the_dag_steps_wait_for_a_working_day_without_rows(tmp_path, store):
    """What the DAG does: extract judges against the store's history (read only) and waits
    (IncompleteDataError); validate records each run's profile."""
    source = tenant(tmp_path / "source", missing_day=MISSING_DAY)
    waited = {}
    with open_store() as s:
        for end in daily_ends("2026-11-04", "2026-11-13"):
            start = iso(pd.Timestamp(end) - RULE.query_period)
            for table in ("AzureActivity", "BehaviorAnalytics"):
                try:
                    extracted = pipeline.extract_to_stage(
                        source, table, start, end, tmp_path / "staging", RULE, store=s
                    )
                except IncompleteDataError as exc:
                    waited[(end, table)] = str(exc)
                    continue
                pipeline.validate_stage(extracted, s, RULE)
    assert list(waited) == [
        ("2026-11-12T00:00:00Z", "BehaviorAnalytics"),
        ("2026-11-13T00:00:00Z", "BehaviorAnalytics"),
    ]
    assert all("no rows 2026-11-11T08..17" in message for message in waited.values())
