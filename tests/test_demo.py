"""The demo lake generator (detection_tools/lakegen.py): deterministic, typed, laid out as the
readers expect; it plants the rule's sample cases as written, and its planted ground truth is
exactly what the rule finds."""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from datetime import date, timedelta

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from detection_tools import lakegen, samples
from include.detection import sources
from include.detection.correlation import correlate
from include.detection.rule import load_rule

INPUTS = load_rule().inputs
DAY = timedelta(days=1)
PERIOD = 2 * DAY


@pytest.fixture(scope="module")
def tables():
    return lakegen.generate(lakegen.DEMO_START, lakegen.DEMO_DAYS)


@pytest.fixture(scope="module")
def frames(tables):
    return {name: t.to_pandas() for name, t in tables.items()}


def utc(d: date) -> pd.Timestamp:
    return pd.Timestamp(d, tz="UTC")


def in_window(frame: pd.DataFrame, start, end) -> pd.DataFrame:
    return frame[(frame["TimeGenerated"] >= start) & (frame["TimeGenerated"] < end)]


def detect(frames, start, end) -> pd.DataFrame:
    return correlate(
        in_window(frames["AzureActivity"], start, end),
        in_window(frames["BehaviorAnalytics"], start, end),
    )


def found(result: pd.DataFrame) -> Counter:
    return Counter(
        zip(
            result["CorrelationId"],
            result["Caller"],
            result["VirtualMachineName"],
            result["UEBAEventTime"],
        )
    )


def expected(start, end, cases=None) -> Counter:
    return Counter(
        (r["correlation_id"], r["caller"], r["virtual_machine"], r["ueba_time"])
        for r in lakegen.expected_alerts(start, end, cases)
    )


DAILY_RUNS = [lakegen.DEMO_START + i * DAY for i in range(1, lakegen.DEMO_DAYS + 3)]


# --- Determinism, speed, types -------------------------------------------------------------------


def test_same_seed_same_tables(tables):
    again = lakegen.generate(lakegen.DEMO_START, lakegen.DEMO_DAYS, seed=lakegen.DEMO_SEED)
    for name in lakegen.TABLES:
        assert again[name].equals(tables[name]), name


def test_other_seed_changes_the_noise_not_the_ground_truth(frames):
    other = {
        n: t.to_pandas()
        for n, t in lakegen.generate(lakegen.DEMO_START, lakegen.DEMO_DAYS, seed=8).items()
    }
    assert not other["AzureActivity"]["EventDataId"].equals(frames["AzureActivity"]["EventDataId"])
    start, end = utc(lakegen.DEMO_START), utc(lakegen.DEMO_START + lakegen.DEMO_DAYS * DAY)
    assert found(detect(other, start, end)) == expected(start, end)


def test_default_demo_generates_in_under_3_seconds():
    t0 = time.perf_counter()
    lakegen.generate(lakegen.DEMO_START, lakegen.DEMO_DAYS)
    assert time.perf_counter() - t0 < 3.0


@pytest.mark.parametrize(
    "name,schema",
    [("AzureActivity", lakegen.ACTIVITY_SCHEMA), ("BehaviorAnalytics", lakegen.UEBA_SCHEMA)],
    ids=["activity", "ueba"],
)
def test_column_types(tables, name, schema):
    table = tables[name]
    assert table.schema.equals(schema)
    for field in table.schema:
        if field.name == "TimeGenerated":
            assert field.type == pa.timestamp("ns", tz="UTC")
        elif field.name == "InvestigationPriority":
            assert field.type == pa.int32()
        else:
            assert field.type == pa.string(), field.name
        assert table.column(field.name).null_count == 0, field.name
    assert set(table.column("Type").to_pylist()) == {name}
    assert set(INPUTS[name]) <= set(table.column_names)


def test_activity_columns_are_realistic(frames):
    a = frames["AzureActivity"]
    assert {
        "TimeGenerated",
        "OperationNameValue",
        "OperationName",
        "Authorization",
        "CorrelationId",
        "Caller",
        "CallerIpAddress",
        "ActivityStatusValue",
        "ActivitySubstatusValue",
        "CategoryValue",
        "Level",
        "ResourceGroup",
        "ResourceProviderValue",
        "SubscriptionId",
        "ResourceId",
        "_ResourceId",
        "TenantId",
        "Properties",
        "HTTPRequest",
        "EventDataId",
        "Type",
    } <= set(a.columns)
    guid = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
    assert a["CorrelationId"].str.match(guid).all() and a["EventDataId"].is_unique
    auth = a["Authorization"].map(json.loads)
    assert auth.map(lambda x: {"action", "scope"} <= set(x)).all()
    assert (auth.map(lambda x: x.get("evidence", {}).get("principalType")) == "User").mean() > 0.5
    props = a["Properties"].str.len()
    assert 200 <= props.median() <= 800
    a["Properties"].map(json.loads)  # all valid JSON
    assert a["HTTPRequest"].map(lambda t: t == "" or "clientIpAddress" in json.loads(t)).all()
    callers = a["Caller"]
    assert callers.str.contains("@").mean() > 0.6
    assert callers.str.match(guid).any()  # service principals
    assert a["SubscriptionId"].nunique() == 3 and a["TenantId"].nunique() == 2
    # Diurnal shape: busy afternoons (UTC), quiet small hours.
    hours = a["TimeGenerated"].dt.hour.value_counts()
    assert hours[14] > 2 * hours[4]


def test_run_commands_in_both_families_and_cases(frames):
    a = frames["AzureActivity"]
    rc = a[a["OperationNameValue"].str.lower() == lakegen.RUN_COMMAND.lower()]
    assert {
        "Started",
        "Accepted",
        "Succeeded",
        "Failed",
        "Start",
        "Accept",
        "Success",
        "Failure",
    } <= set(rc["ActivityStatusValue"])
    assert {lakegen.RUN_COMMAND, lakegen.RUN_COMMAND.upper()} <= set(rc["OperationNameValue"])
    vmss = "/virtualMachineScaleSets/vmss-build/virtualMachines/"
    assert rc["Authorization"].str.contains(vmss).any()
    per_day = rc.groupby(rc["TimeGenerated"].dt.date)["CorrelationId"].nunique()
    assert len(per_day) == lakegen.DEMO_DAYS and (per_day >= 3).all()
    # Triplets share a CorrelationId; the statuses of one run come from one family.
    sizes = rc.groupby("CorrelationId").size()
    assert (sizes == 3).mean() > 0.8


def test_ueba_rows_are_realistic(frames):
    u = frames["BehaviorAnalytics"]
    assert {"Azure AD", "AzureActivity", "Device logons"} <= set(u["EventSource"])
    insights = u["ActivityInsights"].map(json.loads)
    values = {v for d in insights for v in d.values()}
    assert values == {"True", "False", "true", True}  # "true" and true: planted near-misses
    uncommon = insights.map(lambda d: d.get("ActionUncommonlyPerformedByUser")) == "True"
    azure_ad = u["EventSource"] == "Azure AD"
    assert 0 < (uncommon & azure_ad).sum() < 0.1 * azure_ad.sum()
    assert u["UsersInsights"].map(lambda t: "IsDormantAccount" in json.loads(t)).all()
    u["DevicesInsights"].map(json.loads)
    upn = u["UserPrincipalName"]
    assert (upn != upn.str.lower()).any() and (upn == "").any()  # mixed case; local accounts
    assert u["UserPrincipalName"].str.lower().nunique() == 25 + 1  # 25 users and ""


# --- Planted ground truth ------------------------------------------------------------------------


def test_the_planted_cases_are_the_rule_samples():
    cases = {c.name: c for c in samples.load()}
    assert [c["name"] for c in lakegen.PLANTED] == list(cases)  # every sample, in the default demo
    for c in lakegen.PLANTED:
        sample = cases[c["name"]]
        assert lakegen.DEMO_START <= c["day"] < lakegen.DEMO_START + lakegen.DEMO_DAYS * DAY
        assert (c["expected_alert"], c["description"]) == (sample.alert, sample.reason)
        assert c["expected_rows"] == len(sample.results)
        ueba = sample.rows["BehaviorAnalytics"]
        assert c["ueba_times"] == tuple(r["TimeGenerated"] for r in ueba)
    by_name = {c["name"]: c for c in lakegen.PLANTED}
    tp = by_name["tp_plus_6h_inclusive"]
    assert tp["run_start"] - tp["ueba_times"][0] == pd.Timedelta(hours=6)
    tp = by_name["tp_minus_1h_inclusive"]
    assert tp["run_start"] - tp["ueba_times"][0] == -pd.Timedelta(hours=1)
    nm = by_name["nm_run_6h_plus_1s"]
    assert nm["run_start"] - nm["ueba_times"][0] == pd.Timedelta(hours=6, seconds=1)
    assert sum(c["expected_alert"] for c in lakegen.PLANTED) >= 5
    assert sum(not c["expected_alert"] for c in lakegen.PLANTED) >= 8


def test_planted_rows_are_in_the_tables(frames):
    a, u = frames["AzureActivity"], frames["BehaviorAnalytics"]
    for c in lakegen.PLANTED:
        run = a[a["CorrelationId"] == c["correlation_id"]]
        assert len(run) == 3, c["name"]
        assert run["TimeGenerated"].min() == c["run_start"]
        assert run["TimeGenerated"].max() == c["run_end"]
        assert set(run["Caller"]) == {c["caller"]}
        for t in c["ueba_times"]:
            assert (u["TimeGenerated"] == t).any(), c["name"]


def test_the_lake_holds_each_sample_row_as_written(tables):
    """Every column a sample row writes has its value in the lake (the rest comes from the
    demo's world); Authorization keeps the sample's action and scope beside the RBAC evidence."""
    lake = {name: t.to_pandas() for name, t in tables.items()}
    for c in lakegen.PLANTED:
        for name, rows in c["rows"].items():
            for row in rows:
                frame = lake[name]
                match = frame[frame["TimeGenerated"] == row["TimeGenerated"]]
                if name == "AzureActivity":
                    match = match[match["CorrelationId"] == row["CorrelationId"]]
                else:
                    match = match[match["UserPrincipalName"] == row["UserPrincipalName"]]
                assert len(match) == 1, (c["name"], row)
                got = match.iloc[0].to_dict()
                for col, value in row.items():
                    if col == "Authorization":
                        auth = json.loads(got[col])
                        assert {k: auth[k] for k in ("action", "scope")} == json.loads(value)
                    else:
                        assert got[col] == value, (c["name"], col)


def test_mixed_case_caller_and_upn_alert(frames):
    tp = next(c for c in lakegen.PLANTED if c["name"] == "tp_plus_6h_inclusive")
    assert tp["caller"] == "Alice.Admin@contoso.com"
    assert tp["user_principal_name"] == "alice.admin@Contoso.com"
    result = detect(frames, utc(lakegen.DEMO_ALERT_DATE) - PERIOD, utc(lakegen.DEMO_ALERT_DATE))
    row = result[result["CorrelationId"] == tp["correlation_id"]]
    assert len(row) == 1
    assert row.iloc[0]["AccountName"] == "Alice.Admin"
    assert row.iloc[0]["AccountUPNSuffix"] == "contoso.com"


def test_alert_date_window_finds_exactly_the_planted_true_positives(frames):
    end = utc(lakegen.DEMO_ALERT_DATE)
    result = detect(frames, end - PERIOD, end)
    want = expected(end - PERIOD, end)
    assert found(result) == want
    assert len({k[0] for k in want}) >= 2  # at least two planted true positives
    found_ids = set(result["CorrelationId"])
    assert {c["name"] for c in lakegen.PLANTED if c["correlation_id"] in found_ids} == {
        "tp_plus_6h_inclusive",
        "tp_new_status_family",
        "tp_minus_1h_inclusive",
        "tp_vmss_instance",
        "tp_two_uncommon_signins",
    }
    vmss = result[result["Caller"] == "erin.lopez@contoso.com"]
    assert list(vmss["VirtualMachineName"]) == ["3"]


@pytest.mark.parametrize("run_date", DAILY_RUNS, ids=str)
def test_every_daily_window_finds_exactly_its_planted_true_positives(frames, run_date):
    end = utc(run_date)
    assert found(detect(frames, end - PERIOD, end)) == expected(end - PERIOD, end)


def test_windows_with_zero_alerts_and_overlapping_reruns(frames):
    counts = {d: len(detect(frames, utc(d) - PERIOD, utc(d))) for d in DAILY_RUNS}
    assert [d for d, n in counts.items() if n == 0]  # some days alert on nothing

    def run(d):
        return set(detect(frames, utc(d) - PERIOD, utc(d))["CorrelationId"])

    today, tomorrow = run(lakegen.DEMO_ALERT_DATE), run(lakegen.DEMO_ALERT_DATE + DAY)
    assert today & tomorrow  # the next run sees some of the same true positives again


def test_near_misses_never_alert(frames):
    start, end = utc(lakegen.DEMO_START), utc(lakegen.DEMO_START + lakegen.DEMO_DAYS * DAY)
    result = detect(frames, start, end)
    assert found(result) == expected(start, end)
    misses = [c for c in lakegen.PLANTED if not c["expected_alert"]]
    assert {
        "nm_run_6h_plus_1s",
        "nm_failed_run",
        "nm_insight_lowercase_true",
        "nm_insight_json_true",
        "nm_eventsource_azuread",
        "nm_empty_location",
        "nm_scope_virtualmachinesx",
        "nm_different_user",
    } <= {c["name"] for c in misses}
    assert not {c["correlation_id"] for c in misses} & set(result["CorrelationId"])
    # Neither does the noise: every result row is a planted true positive.
    planted = {c["correlation_id"] for c in lakegen.PLANTED if c["expected_alert"]}
    assert set(result["CorrelationId"]) == planted


def test_other_start_and_length_keep_ground_truth_consistent():
    start_day, days = date(2027, 3, 1), 4
    tables = lakegen.generate(start_day, days, seed=3, activity_per_day=800)
    frames = {n: t.to_pandas() for n, t in tables.items()}
    cases = lakegen.planted_cases(start_day, days)
    assert cases and all(start_day <= c["day"] < start_day + days * DAY for c in cases)
    start, end = utc(start_day), utc(start_day + days * DAY)
    assert found(detect(frames, start, end)) == expected(start, end, cases)


# --- Files: Hive-partitioned Parquet, JSON Lines, the demo lake ----------------------------------


def test_write_lake_hive_layout(tables, tmp_path):
    root = lakegen.write_lake(tables, tmp_path / "lake")
    days = [f"date={lakegen.DEMO_START + i * DAY}" for i in range(lakegen.DEMO_DAYS)]
    for name, table in tables.items():
        assert sorted(p.name for p in (root / name).iterdir()) == days
        total = 0
        for part in days:
            files = os.listdir(root / name / part)
            assert files == ["part-0.parquet"]
            t = pq.read_table(root / name / part / "part-0.parquet")
            assert t.schema.equals(table.schema)
            dates = {ts.date() for ts in t.column("TimeGenerated").to_pylist()}
            assert dates == {date.fromisoformat(part.removeprefix("date="))}
            total += t.num_rows
        assert total == table.num_rows


def _read_window(root, start, end):
    return {
        name: sources.read_table(
            root, name, start.to_pydatetime(), end.to_pydatetime(), INPUTS[name]
        ).frame
        for name in lakegen.TABLES
    }


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_files_read_back_to_the_same_alerts(tables, tmp_path, fmt):
    root = (lakegen.write_lake if fmt == "parquet" else lakegen.write_jsonl)(tables, tmp_path / fmt)
    end = utc(lakegen.DEMO_ALERT_DATE)
    read = _read_window(root, end - PERIOD, end)
    result = correlate(read["AzureActivity"], read["BehaviorAnalytics"])
    assert found(result) == expected(end - PERIOD, end)


def test_jsonl_format(tables, tmp_path):
    root = lakegen.write_jsonl(tables, tmp_path / "jsonl")
    assert sorted(p.name for p in root.iterdir()) == [
        "AzureActivity.jsonl",
        "BehaviorAnalytics.jsonl",
    ]
    iso = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$")
    for name, table in tables.items():
        lines = (root / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(lines) == table.num_rows
        records = [json.loads(line) for line in lines[:200]]
        assert all(iso.match(r["TimeGenerated"]) for r in records)
        assert list(records[0]) == table.column_names
    ueba = [
        json.loads(line) for line in (root / "BehaviorAnalytics.jsonl").read_text().splitlines()
    ]
    for col in ("ActivityInsights", "UsersInsights", "DevicesInsights"):
        assert all(isinstance(r[col], dict) for r in ueba), col
    assert all(isinstance(r["InvestigationPriority"], int) for r in ueba)
    activity = json.loads((root / "AzureActivity.jsonl").open().readline())
    assert isinstance(activity["Authorization"], str) and isinstance(activity["Properties"], str)
    tp = next(c for c in lakegen.PLANTED if c["name"] == "tp_plus_6h_inclusive")
    assert any(r["TimeGenerated"] == "2026-10-29T07:30:00.1234567Z" for r in ueba)
    assert tp["ueba_times"][0] == pd.Timestamp("2026-10-29T07:30:00.1234567Z")


def test_ensure_demo_lake_writes_once(tmp_path):
    root = tmp_path / "home" / "lake"
    assert lakegen.ensure_demo_lake(root) == root
    part = root / "AzureActivity" / f"date={lakegen.DEMO_ALERT_DATE}" / "part-0.parquet"
    assert part.exists() and (root / "BehaviorAnalytics").is_dir()
    assert [p.name for p in root.parent.iterdir()] == ["lake"]  # no temporary folder left
    mtime = part.stat().st_mtime_ns
    lakegen.ensure_demo_lake(root)
    assert part.stat().st_mtime_ns == mtime
    end = utc(lakegen.DEMO_ALERT_DATE)
    read = _read_window(root, end - PERIOD, end)
    result = correlate(read["AzureActivity"], read["BehaviorAnalytics"])
    assert found(result) == expected(end - PERIOD, end)


def test_ensure_demo_lake_completes_a_half_lake(tmp_path):
    root = tmp_path / "lake"
    (root / "BehaviorAnalytics" / "date=2026-10-26").mkdir(parents=True)  # left by a crash
    (root / "notes.txt").write_text("keep me")
    stale = tmp_path / "lake.tmp-999999"  # an interrupted run's temporary folder
    (stale / "AzureActivity").mkdir(parents=True)
    lakegen.ensure_demo_lake(root)
    assert (root / "notes.txt").read_text() == "keep me"
    assert len(list((root / "BehaviorAnalytics").iterdir())) == lakegen.DEMO_DAYS
    assert len(list((root / "AzureActivity").iterdir())) == lakegen.DEMO_DAYS
    assert not (tmp_path / f"lake.tmp-{os.getpid()}").exists()
    assert not stale.exists()  # pid 999999 is not running: its leftovers are removed


def test_ensure_demo_lake_into_existing_empty_folder(tmp_path):
    root = tmp_path / "lake"
    root.mkdir()
    lakegen.ensure_demo_lake(root)
    assert len(list((root / "AzureActivity").iterdir())) == lakegen.DEMO_DAYS
