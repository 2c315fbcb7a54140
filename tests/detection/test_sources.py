"""Reading the tables: only the rule's columns, only the window's rows, nothing lost silently."""

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from include.detection import sources
from include.detection.errors import SourceError
from tests.factories import RULE, activity_row, ueba_row

START, END = pd.Timestamp("2026-10-30T00:00:00Z"), pd.Timestamp("2026-11-01T00:00:00Z")
COLS = RULE.inputs["AzureActivity"]


def parquet_table(folder, rows, tz="UTC", unit="ns", partition=True, extra=None):
    frame = pd.DataFrame(rows)
    times = pd.to_datetime(frame["TimeGenerated"], utc=True, format="ISO8601")
    frame = frame.drop(columns="TimeGenerated")
    for k, v in (extra or {}).items():
        frame[k] = v
    table = pa.Table.from_pandas(frame, preserve_index=False)
    arr = pa.array(
        times.dt.tz_convert("UTC").dt.tz_localize(None).astype(f"datetime64[{unit}]"),
        pa.timestamp(unit),
    )
    table = table.append_column("TimeGenerated", arr.cast(pa.timestamp(unit, tz=tz)) if tz else arr)
    if partition:
        days = times.dt.strftime("%Y-%m-%d")
        for day in sorted(set(days)):
            out = folder / f"date={day}"
            out.mkdir(parents=True, exist_ok=True)
            pq.write_table(table.filter(pa.array((days == day).to_list())), out / "part-0.parquet")
    else:
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / "data.parquet")


ROWS = [
    activity_row(TimeGenerated=t)
    for t in (
        "2026-10-29T23:59:59.9999999Z",
        "2026-10-30T00:00:00Z",
        "2026-10-31T12:00:00.1234567Z",
        "2026-10-31T23:59:59.9999999Z",
        "2026-11-01T00:00:00Z",
        "2026-11-05T00:00:00Z",
    )
]
IN_WINDOW = 3


@pytest.mark.parametrize(
    "tz, partition",
    [("UTC", True), (None, True), ("UTC", False), ("Europe/Amsterdam", True)],
    ids=["utc-hive", "naive-means-utc", "flat-folder", "other-zone-same-instant"],
)
def test_parquet_window_is_half_open_at_100ns_precision(tmp_path, tz, partition):
    parquet_table(
        tmp_path / "AzureActivity", ROWS, tz=tz, partition=partition, extra={"Properties": "x" * 10}
    )
    scan = sources.read_table(tmp_path, "AzureActivity", START, END, COLS)
    assert scan.format == "parquet" and scan.rows_read == len(ROWS)
    assert len(scan.frame) == scan.rows_in_window == IN_WINDOW
    assert list(scan.frame.columns) == list(COLS), "only the rule's columns are read"
    assert str(scan.frame["TimeGenerated"].dtype) == "datetime64[ns, UTC]"
    assert pd.Timestamp("2026-10-31T12:00:00.1234567Z") in set(scan.frame["TimeGenerated"])


def test_jsonl_window_and_precision_match_parquet(tmp_path):
    (tmp_path / "AzureActivity.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    scan = sources.read_table(tmp_path, "AzureActivity", START, END, COLS)
    assert len(scan.frame) == IN_WINDOW and scan.rows_read == len(ROWS)
    assert pd.Timestamp("2026-10-31T23:59:59.9999999Z") in set(scan.frame["TimeGenerated"])


def test_jsonl_offsets_are_converted_to_utc_and_nanoseconds_truncated_to_ticks(tmp_path):
    rows = [
        activity_row(TimeGenerated="2026-10-31T02:00:00+02:00"),
        activity_row(TimeGenerated="2026-10-31T00:00:00.123456789Z"),
    ]
    (tmp_path / "AzureActivity.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    times = list(
        sources.read_table(tmp_path, "AzureActivity", START, END, COLS).frame["TimeGenerated"]
    )
    assert times == [
        pd.Timestamp("2026-10-31T00:00:00Z"),
        pd.Timestamp("2026-10-31T00:00:00.1234567Z"),
    ]


def test_dynamic_columns_as_objects_or_text_become_json_text(tmp_path):
    obj = {"ActionUncommonlyPerformedByUser": "True"}
    rows = [ueba_row(ActivityInsights=obj), ueba_row(ActivityInsights=json.dumps(obj))]
    (tmp_path / "BehaviorAnalytics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    scan = sources.read_table(
        tmp_path, "BehaviorAnalytics", START, END, RULE.inputs["BehaviorAnalytics"]
    )
    assert [json.loads(t) for t in scan.frame["ActivityInsights"]] == [obj, obj]


def test_authorization_given_as_an_object_is_kept_as_compact_json_text(tmp_path):
    row = activity_row(Authorization={"scope": "/subscriptions/s/x/virtualMachines/v"})
    (tmp_path / "AzureActivity.jsonl").write_text(json.dumps(row) + "\n")
    frame = sources.read_table(tmp_path, "AzureActivity", START, END, COLS).frame
    assert frame["Authorization"][0] == '{"scope":"/subscriptions/s/x/virtualMachines/v"}'


def test_missing_column_is_reported_not_invented(tmp_path):
    rows = [{k: v for k, v in activity_row().items() if k != "CallerIpAddress"}]
    (tmp_path / "AzureActivity.jsonl").write_text(json.dumps(rows[0]) + "\n")
    scan = sources.read_table(tmp_path, "AzureActivity", START, END, COLS)
    assert scan.missing_columns == ["CallerIpAddress"] and "CallerIpAddress" not in scan.frame


def test_null_values_in_a_present_column_stay_null(tmp_path):
    (tmp_path / "AzureActivity.jsonl").write_text(json.dumps(activity_row(Caller=None)) + "\n")
    frame = sources.read_table(tmp_path, "AzureActivity", START, END, COLS).frame
    assert frame["Caller"].isna().all()


def test_parquet_with_string_timegenerated_is_a_clear_source_error(tmp_path):
    folder = tmp_path / "AzureActivity"
    folder.mkdir()
    pq.write_table(
        pa.table({"TimeGenerated": ["2026-10-31"], "Caller": ["a"]}), folder / "x.parquet"
    )
    with pytest.raises(
        SourceError, match=r"AzureActivity\.TimeGenerated: is VARCHAR .* expected a timestamp"
    ):
        sources.read_table(tmp_path, "AzureActivity", START, END, COLS)


def test_parquet_null_timegenerated_rows_are_counted_in_quarantine(tmp_path):
    parquet_table(tmp_path / "AzureActivity", ROWS[:3], partition=False)
    extra = pa.table(
        {"TimeGenerated": pa.array([None], pa.timestamp("ns", tz="UTC")), "Caller": ["x"]}
    )
    pq.write_table(extra, tmp_path / "AzureActivity" / "nulls.parquet")
    scan = sources.read_table(tmp_path, "AzureActivity", START, END, COLS)
    assert [q.get("count") for q in scan.quarantine] == [1]


def test_missing_table_names_what_was_looked_for(tmp_path):
    with pytest.raises(SourceError, match="AzureActivity: not found"):
        sources.read_table(tmp_path, "AzureActivity", START, END, COLS)


def test_parquet_string_encodings_and_all_null_columns_read_as_strings(tmp_path):
    folder = tmp_path / "AzureActivity"
    folder.mkdir()
    pq.write_table(
        pa.table(
            {
                "TimeGenerated": pa.array(
                    [pd.Timestamp("2026-10-31T10:00:00Z").value // 1000],
                    pa.timestamp("us", tz="UTC"),
                ),
                "OperationNameValue": pa.array(
                    ["Microsoft.Compute/virtualMachines/runCommand/action"]
                ).dictionary_encode(),
                "Authorization": pa.array(
                    ['{"scope":"/subscriptions/s/x/virtualMachines/v"}'], pa.large_string()
                ),
                "CorrelationId": pa.array([None], pa.null()),
                "Caller": pa.array(["a@b.c"], pa.string_view()),
                "CallerIpAddress": pa.array([None], pa.string()),
                "ActivityStatusValue": pa.array(["Succeeded"]),
            }
        ),
        folder / "x.parquet",
    )
    frame = sources.read_table(tmp_path, "AzureActivity", START, END, COLS).frame
    assert all(str(frame[c].dtype) == "str" for c in COLS if c != "TimeGenerated")
    assert frame["Caller"][0] == "a@b.c" and frame["CorrelationId"].isna().all()
    assert frame["TimeGenerated"][0] == pd.Timestamp("2026-10-31T10:00:00Z")


@pytest.mark.parametrize(
    "insights, kept",
    [
        ('{"ActionUncommonlyPerformedByUser":"True"}', True),
        ('{"ActionUncommonlyPerformedByUser" :\n "True", "x": 1}', True),
        ('{"\\u0041ctionUncommonlyPerformedByUser":"True"}', True),
        ('{"ActionUncommonlyPerformedByUser":"\\u0054rue"}', True),
        ('{"ActionUncommonlyPerformedByUser":"False","Other":"True"}', False),
        ('{"ActionUncommonlyPerformedByUser":true}', False),
        ('{"ActionUncommonlyPerformedByUser":"true"}', False),
    ],
    ids=[
        "plain",
        "json-whitespace",
        "escaped-key",
        "escaped-value",
        "other-key-true",
        "json-boolean",
        "lowercase",
    ],
)
@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_pushdown_keeps_every_row_that_can_hold_the_insight(tmp_path, insights, kept, fmt):
    """The scan's insight predicate is a necessary condition: it may keep extra rows (the query
    decides), never drop one the query would match."""
    from include.detection.correlation import where_azure_ad_uncommon_action

    rows = [ueba_row(ActivityInsights=insights), ueba_row(EventSource="AzureAD")]
    if fmt == "jsonl":
        (tmp_path / "BehaviorAnalytics.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows)
        )
    else:
        parquet_table(tmp_path / "BehaviorAnalytics", rows, partition=False)
    scan = sources.read_table(
        tmp_path, "BehaviorAnalytics", START, END, RULE.inputs["BehaviorAnalytics"]
    )
    assert scan.rows_in_window == 2, "the profile still counts every row"
    assert len(where_azure_ad_uncommon_action(scan.frame)) == int(kept)
    assert len(scan.frame) >= int(kept)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_utf8_byte_order_mark_is_not_part_of_the_first_name_or_record(tmp_path, fmt):
    """Spreadsheet tools save CSV with a BOM; the reader must still find TimeGenerated."""
    frame = pd.DataFrame(ROWS).rename(columns={"TimeGenerated": "TimeGenerated [UTC]"})
    text = (
        frame.to_csv(index=False) if fmt == "csv" else "".join(json.dumps(r) + "\n" for r in ROWS)
    )
    (tmp_path / f"AzureActivity.{fmt}").write_bytes(b"\xef\xbb\xbf" + text.encode())
    scan = sources.read_table(tmp_path, "AzureActivity", START, END, COLS)
    assert scan.rows_read == len(ROWS) and scan.rows_in_window == IN_WINDOW
    assert scan.missing_columns == [] and scan.quarantine == []
