"""The whole `detect` command (readers, window, gate, correlation, writers) against the KQL oracle:
generated adversarial tables written as JSON Lines and as a Hive-partitioned Parquet lake."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings

from include.detection import cli, results
from include.detection.correlation import OUTPUT_COLUMNS
from include.detection.results import DATETIME_COLUMNS
from tests.oracle import as_counter, describe_diff, kql_oracle, normalize_ours
from tests.test_differential import T0, scenarios

# The window's end sits on T0 + 1d, where generated activity can fall: the edge is exercised.
END = (T0 + pd.Timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _jsonl(frame: pd.DataFrame, path):
    with open(path, "w") as fh:
        for rec in frame.astype(object).where(frame.notna(), None).to_dict(orient="records"):
            rec["TimeGenerated"] = rec["TimeGenerated"].isoformat().replace("+00:00", "Z")
            for col in ("ActivityInsights", "UsersInsights"):  # objects as objects when valid
                if isinstance(rec.get(col), str):
                    try:
                        parsed = json.loads(rec[col])
                    except ValueError:
                        continue
                    if isinstance(parsed, dict):
                        rec[col] = parsed
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


def _lake(frame: pd.DataFrame, folder):
    days = frame["TimeGenerated"].dt.strftime("%Y-%m-%d")
    for day in sorted(set(days)):
        part = frame[days == day]
        out = folder / f"date={day}"
        out.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(part, preserve_index=False)
        pq.write_table(table, out / "part-0.parquet")


def _ours(path) -> list[dict]:
    records = results.read(path)
    # object columns built directly: a DataFrame from records would infer `str` for a column of
    # strings and None, and turn the None into NaN
    frame = pd.DataFrame(
        {c: pd.Series([r[c] for r in records], dtype=object) for c in OUTPUT_COLUMNS}
    )
    for col in DATETIME_COLUMNS:
        frame[col] = pd.to_datetime(frame[col], utc=True, format="ISO8601")
    return normalize_ours(frame)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(scenarios())
def test_detect_on_jsonl_and_parquet_equals_the_kql_oracle(tmp_path_factory, tables):
    activity, ueba = tables
    start, end = pd.Timestamp(END) - pd.Timedelta(days=2), pd.Timestamp(END)
    # the oracle sees what the rule's query period keeps: [end - 2d, end)
    in_window = [t[(t["TimeGenerated"] >= start) & (t["TimeGenerated"] < end)] for t in tables]
    oracle = kql_oracle(*in_window)
    base = tmp_path_factory.mktemp("src")
    (base / "jsonl").mkdir()
    _jsonl(activity, base / "jsonl" / "AzureActivity.jsonl")
    _jsonl(ueba, base / "jsonl" / "BehaviorAnalytics.jsonl")
    _lake(activity, base / "lake" / "AzureActivity")
    _lake(ueba, base / "lake" / "BehaviorAnalytics")
    for fmt, out in (("jsonl", base / "r.jsonl"), ("lake", base / "r.parquet")):
        code = cli.main(["detect", "--source", str(base / fmt), "--end", END, "--out", str(out)])
        if any(t.empty for t in in_window):  # no rows in the window is "no data", never "no alerts"
            assert code == 3, fmt
            continue
        assert code == 0, fmt
        ours = _ours(out)
        assert as_counter(ours) == as_counter(oracle), f"{fmt}\n" + describe_diff(ours, oracle)
