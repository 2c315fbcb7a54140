"""The benchmark harness end to end at a tiny scale: it generates a lake, runs our `detect` and
the DuckDB peer each in its own process, they return the same rows, and the report is complete."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from bench import harness, peer
from bench import lake as lakes

pytestmark = pytest.mark.slow

TINY = 20_000


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    base = tmp_path_factory.mktemp("bench")
    return harness.run_bench(
        {"T": TINY},
        repeat=1,
        data_dir=base / "data",
        out=base / "out" / "report.json",
        dag=True,
        dag_scale="T",
        warm=False,
        workers=1,
        log=lambda *a: None,
    )


@pytest.fixture(scope="module")
def scale(report):
    return report["scales"]["T"]


def test_lake_is_generated_with_the_shape_of_an_export(scale):
    lake = scale["lake"]
    assert lake["generated_now"] and lake["bytes_on_disk"] > 0 and lake["generation_seconds"] > 0
    assert lake["rows"] == {
        "AzureActivity": 3 * TINY,
        "BehaviorAnalytics": pytest.approx(3 * TINY // 5, rel=0.01),
    }
    root = Path(lake["path"])
    for table in lakes.TABLES:
        files = sorted((root / table).glob("date=*/part-0.parquet"))
        assert [f.parent.name for f in files] == [
            "date=2026-10-27",
            "date=2026-10-28",
            "date=2026-10-29",
        ]
        schema = pq.read_schema(files[0])
        assert str(schema.field("TimeGenerated").type) == "timestamp[ns, tz=UTC]"
        assert (
            schema.metadata is None or b"ARROW:schema" not in schema.metadata
        )  # as an exporter writes
    activity = ds.dataset(root / "AzureActivity", partitioning="hive").to_table(
        columns=["OperationNameValue", "ActivityStatusValue", "Authorization", "Properties"]
    )
    ops = activity.column("OperationNameValue").to_pylist()
    run_commands = [o for o in ops if o.lower() == lakes.RUN_COMMAND.lower()]
    assert 0 < len(run_commands) < len(ops) / 100
    assert {o for o in run_commands} >= {lakes.RUN_COMMAND, lakes.RUN_COMMAND.upper()}
    statuses = set(activity.column("ActivityStatusValue").to_pylist())
    assert {"Started", "Accepted", "Succeeded", "Start", "Accept", "Success"} <= statuses
    big = [len(p) for p in activity.column("Properties").to_pylist()]
    assert sum(big) / len(big) > 300


def test_lake_is_reused_from_the_cache(scale, tmp_path_factory):
    root = Path(scale["lake"]["path"])
    path, manifest = lakes.ensure_lake(
        root.parent, lakes.LakeSpec(rows_per_day=TINY), log=lambda *a: None
    )
    assert path == root and manifest["generated"] is False


def test_both_engines_return_the_same_rows(scale):
    cmp_ = scale["comparison"]
    assert cmp_["agree"], json.dumps(cmp_, indent=2, default=str)
    assert cmp_["rows_ours"] == cmp_["rows_duckdb"] > 0
    assert cmp_["only_ours"] == cmp_["only_duckdb"] == 0


def test_report_has_every_measurement(report, scale):
    for engine in harness.ENGINES:
        m = scale[engine]
        for key in ("wall_s", "cpu_s", "user_s", "sys_s", "peak_rss_mib", "min_wall_s", "runs"):
            assert key in m, (engine, key)
        assert m["wall_s"] > 0 and m["cpu_s"] > 0 and m["peak_rss_mib"] > 10
        run = scale["runs"][engine][0]
        assert run["exit_code"] == 0 and not run["timed_out"]
    assert set(scale["ratios"]) == {"wall", "cpu", "peak_rss"}
    assert scale["window"] == {"start": "2026-10-28T00:00:00Z", "end": "2026-10-30T00:00:00Z"}
    assert report["meta"]["versions"]["duckdb"]
    out = Path(report["options"]["data_dir"]).parent / "out" / "report.json"
    assert json.loads(out.read_text())["scales"]["T"]["comparison"]["agree"]
    assert "ours/duckdb" in harness.format_table(report)


def test_dag_equivalent_runs_every_task_cold_and_warm(report, scale):
    for mode, d in report["dag"].items():
        assert d["exit_code"] == 0, d.get("log_tail")
        steps = d["steps"]
        assert list(steps["steps"])[-1] == "data_docs (beside the run)"
        assert set(steps["data_docs"]) == {"AzureActivity", "BehaviorAnalytics"}
        # the same rows as `detect`, one alert (and ticket) per Run Command execution
        assert steps["results"] == scale["comparison"]["rows_ours"]
        assert steps["tickets"] == steps["alerts"]["alerts"] > 0
        assert 0 < d["to_delivery_s"] < d["wall_s"]
        assert d["vs_detect"]["to_delivery"] > 0 and "met" in d["target"]
    # a warm worker has GE imported before the validate step; a cold one imports it there
    assert report["dag"]["warm"]["steps"]["ge_preloaded"] is True
    assert report["dag"]["cold"]["steps"]["ge_preloaded"] is False
    assert "DAG-equivalent at T, warm" in harness.format_table(report)


def test_flagged_scenario_runs_beside_each_scale_with_one_in_eight_flagged(report, scale):
    flagged = report["scales"]["T" + harness.FLAGGED]
    assert scale["uncommon_share"] == lakes.UNCOMMON_SHARE
    assert flagged["uncommon_share"] == lakes.HIGH_UNCOMMON_SHARE
    assert flagged["lake"]["path"] != scale["lake"]["path"]
    assert flagged["comparison"]["agree"], json.dumps(flagged["comparison"], default=str)
    ueba = ds.dataset(
        Path(flagged["lake"]["path"]) / "BehaviorAnalytics", partitioning="hive"
    ).to_table(columns=["EventSource", "ActivityInsights"])
    aad = [
        i
        for e, i in zip(
            ueba.column("EventSource").to_pylist(), ueba.column("ActivityInsights").to_pylist()
        )
        if e == "Azure AD"
    ]
    share = sum('"ActionUncommonlyPerformedByUser":"True"' in i for i in aad) / len(aad)
    assert 0.10 < share < 0.15
    assert "T-1in8" in harness.format_table(report)


def test_backfill_agrees_window_by_window_and_reports_every_mode(tmp_path):
    b = harness.bench_backfill(
        tmp_path / "data",
        tmp_path / "out",
        rows_per_day=TINY,
        days=5,
        warm=False,
        log=lambda *a: None,
    )
    assert b["windows"] == 4
    assert (b["first_end"], b["last_end"]) == ("2026-10-29T00:00:00Z", "2026-11-01T00:00:00Z")
    assert b["comparison"]["agree"], json.dumps(b["comparison"], indent=2, default=str)
    assert sum(b["comparison"]["rows_per_window"]) > 0
    for mode in harness.BACKFILL_MODES:
        run = b["runs"][mode][0]
        assert run["exit_code"] == 0 and b[mode]["wall_s"] > 0, run.get("log_tail")
    assert b["runs"]["ours_separate"][0]["processes"] == 4
    assert {"met", "ratio", "max"} <= set(b["target"])
    assert "detect --from --to" in harness.format_table({"scales": {}, "backfill": b})


def test_each_child_is_measured_on_its_own(tmp_path):
    """A child that allocates ~200 MiB reports it; a small one reports its own size, not the
    test process's (which holds pandas/pyarrow and the lake: a child forked directly would)."""
    big = harness.run_child(
        [sys.executable, "-c", "b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096])"],
        tmp_path / "big.log",
    )
    small = harness.run_child([sys.executable, "-c", "pass"], tmp_path / "small.log")
    assert big["peak_rss_mib"] > 200 > small["peak_rss_mib"]
    assert big["exit_code"] == small["exit_code"] == 0


@pytest.mark.parametrize(
    "text, expected",
    [
        ("virtualMachines", True),
        ("/providers/Microsoft.Compute/VIRTUALMACHINES/vm1", True),
        ("virtualMachineScaleSets/ss/virtualMachines/0", True),
        ("virtualMachinesX/vm", False),
        ("avirtualMachines", False),
        ("virtualMachines_1", True),
    ],
    ids=lambda v: repr(v),
)
def test_peer_has_is_a_whole_term_ascii_case_insensitive_match(text, expected):
    import duckdb

    got = duckdb.execute(
        f"SELECT regexp_matches($1, '{peer.has_term('virtualMachines')}')", [text]
    ).fetchone()[0]
    assert got is expected


@pytest.mark.parametrize("folder", ["lake", "it's a lake", "x'); COPY (SELECT 1) TO 'pwn.csv"])
def test_peer_window_keeps_100ns_precision(tmp_path, folder):
    """Parquet timestamp[ns, UTC] read by DuckDB: the half-open window is exact at 100 ns; the
    lake's path stays one SQL literal whatever quotes it holds."""
    import pyarrow as pa

    tmp_path = tmp_path / folder
    tmp_path.mkdir()
    end = datetime(2026, 10, 30, tzinfo=timezone.utc)
    end_ns = int(end.timestamp()) * 10**9
    t = pa.array(
        [end_ns - 100, end_ns, end_ns - 2 * 86400 * 10**9, end_ns - 2 * 86400 * 10**9 - 100],
        pa.timestamp("ns", tz="UTC"),
    )
    (tmp_path / "AzureActivity").mkdir()
    pq.write_table(pa.table({"TimeGenerated": t}), tmp_path / "AzureActivity" / "part-0.parquet")
    import duckdb

    glob = peer._glob(tmp_path, "AzureActivity")
    kept = duckdb.execute(
        f"SELECT epoch_ns(TimeGenerated) FROM read_parquet({glob}) WHERE TimeGenerated >= "
        f"{peer._ts(datetime(2026, 10, 28, tzinfo=timezone.utc))} AND TimeGenerated < "
        f"{peer._ts(end)} ORDER BY 1"
    ).fetchall()
    assert [k[0] for k in kept] == [end_ns - 2 * 86400 * 10**9, end_ns - 100]
