"""DAG integrity: every expected DAG parses, is documented, scheduled with a real data interval,
retried, tagged from the rule YAML, and imports nothing heavy at parse time."""

import subprocess
import sys

import pytest

from include.detection.rule import load_rule
from tests.conftest import REPO

# Explicit list (Openverse-style): a DAG file that disappears or appears unnoticed fails here.
EXPECTED_DAGS = {"runcommand_ueba_breach.py": ["runcommand_ueba_breach"]}
HEAVY = ("pandas", "pyarrow", "great_expectations", "duckdb", "numpy", "psycopg", "requests")


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_dag_files_are_exactly_the_expected_ones():
    files = sorted(p.name for p in (REPO / "dags").glob("*.py") if not p.name.startswith("_"))
    assert files == sorted(EXPECTED_DAGS)


def test_dags_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dag_ids) == sorted(d for ids in EXPECTED_DAGS.values() for d in ids)


@pytest.mark.parametrize("dag_id", ["runcommand_ueba_breach"])
def test_dag_metadata_comes_from_the_rule(dagbag, dag_id):
    dag = dagbag.dags[dag_id]
    rule = load_rule()
    assert set(rule.tactics) | set(rule.techniques) <= set(dag.tags)
    assert f"severity:{rule.severity}" in dag.tags
    assert rule.description in dag.doc_md
    assert dag.default_args["owner"] and dag.default_args["retries"] >= 1
    # every task retries transient failures, except the Data Docs page, which would render the same
    assert {t.task_id for t in dag.tasks if t.retries < 1} == {"data_docs"}


def test_schedule_has_a_real_daily_data_interval(dagbag):
    """A plain cron string has no data interval in Airflow 3 (start == end); the interval
    timetable does. The interval a run actually gets is asserted in the end-to-end test."""
    from datetime import datetime, timezone

    from airflow.timetables.interval import CronDataIntervalTimetable as CoreTimetable

    timetable = dagbag.dags["runcommand_ueba_breach"].timetable
    assert type(timetable).__name__ == "CronDataIntervalTimetable"
    assert (timetable.expression, str(timetable.timezone)) == (load_rule().cron, "UTC")
    interval = CoreTimetable(timetable.expression, timezone="UTC").infer_manual_data_interval(
        run_after=datetime(2026, 11, 1, tzinfo=timezone.utc))
    assert (interval.start, interval.end) == (datetime(2026, 10, 31, tzinfo=timezone.utc),
                                              datetime(2026, 11, 1, tzinfo=timezone.utc))


def test_task_graph_extracts_in_parallel_then_validates_correlates_alerts_delivers(dagbag):
    dag = dagbag.dags["runcommand_ueba_breach"]
    up = {t.task_id: set(t.upstream_task_ids) for t in dag.tasks}
    assert up["extract_azure_activity"] == set() and up["extract_behavior_analytics"] == set()
    assert up["validate_azure_activity"] == {"extract_azure_activity"}
    assert up["validate_behavior_analytics"] == {"extract_behavior_analytics"}
    assert up["correlate"] == {"validate_azure_activity", "validate_behavior_analytics"}
    assert "correlate" in up["build_alerts"]
    assert up["deliver"] == {"build_alerts"}
    # Data Docs hang off both validations, whatever their outcome, and nothing waits for them
    assert up["data_docs"] == {"validate_azure_activity", "validate_behavior_analytics"}
    assert dag.get_task("data_docs").trigger_rule == "all_done"
    assert not dag.get_task("data_docs").downstream_task_ids


@pytest.mark.parametrize("dag_file", sorted(EXPECTED_DAGS))
def test_parsing_imports_nothing_heavy(dag_file):
    code = (f"import runpy, sys; runpy.run_path({str(REPO / 'dags' / dag_file)!r}); "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO)
    assert out.stdout.strip() == "", f"heavy modules imported at parse time: {out.stdout}"
