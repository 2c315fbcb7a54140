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
    # every task retries transient failures, except the Data Docs page, which would render the
    # same, and the run's verdict over its partitions, which would find the same
    assert {t.task_id for t in dag.tasks if t.retries < 1} == {"data_docs", "examined"}


def test_schedule_has_a_real_daily_data_interval(dagbag):
    """A plain cron string has no data interval in Airflow 3 (start == end); the interval
    timetable does. The interval a run actually gets is asserted in the end-to-end test."""
    from datetime import datetime, timezone

    from airflow.timetables.interval import CronDataIntervalTimetable as CoreTimetable

    timetable = dagbag.dags["runcommand_ueba_breach"].timetable
    assert type(timetable).__name__ == "CronDataIntervalTimetable"
    assert (timetable.expression, str(timetable.timezone)) == (load_rule().cron, "UTC")
    interval = CoreTimetable(timetable.expression, timezone="UTC").infer_manual_data_interval(
        run_after=datetime(2026, 11, 1, tzinfo=timezone.utc)
    )
    assert (interval.start, interval.end) == (
        datetime(2026, 10, 31, tzinfo=timezone.utc),
        datetime(2026, 11, 1, tzinfo=timezone.utc),
    )


def test_task_graph_extracts_in_parallel_then_validates_correlates_alerts_delivers(dagbag):
    dag = dagbag.dags["runcommand_ueba_breach"]
    up = {t.task_id: set(t.upstream_task_ids) for t in dag.tasks}
    # the source's partitions (its workspaces) first; each runs the rule in a mapped group
    assert up["partitions"] == set()
    assert up["extract_azure_activity"] == up["extract_behavior_analytics"] == {"partitions"}
    group = dag.task_group.children["partition"]
    assert type(group).__name__ == "MappedTaskGroup"
    assert {t.task_id for t in dag.tasks if t.task_group is group} == {
        "extract_azure_activity",
        "extract_behavior_analytics",
        "validate_azure_activity",
        "validate_behavior_analytics",
        "correlate",
        "build_alerts",
        "data_docs",
    }
    assert up["validate_azure_activity"] == {"extract_azure_activity"}
    assert up["validate_behavior_analytics"] == {"extract_behavior_analytics"}
    assert up["correlate"] == {"validate_azure_activity", "validate_behavior_analytics"}
    assert "correlate" in up["build_alerts"]
    # delivery and the run's verdict wait for every partition, whatever became of it
    for leaf in ("deliver", "examined"):
        assert up[leaf] == {"build_alerts", "partitions"}
        assert dag.get_task(leaf).trigger_rule == "all_done"
        assert not dag.get_task(leaf).downstream_task_ids
    # Data Docs hang off both validations, whatever their outcome (not in a run skipped for no
    # data yet), and nothing waits for them
    assert up["data_docs"] == {
        "validate_azure_activity",
        "validate_behavior_analytics",
        "partitions",
    }
    assert dag.get_task("data_docs").trigger_rule == "none_skipped"
    assert not dag.get_task("data_docs").downstream_task_ids


@pytest.mark.parametrize("dag_file", sorted(EXPECTED_DAGS))
def test_parsing_imports_nothing_heavy(dag_file):
    code = (
        f"import runpy, sys; runpy.run_path({str(REPO / 'dags' / dag_file)!r}); "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.strip() == "", f"heavy modules imported at parse time: {out.stdout}"


# --- issue #11: no silent gaps ------------------------------------------------------------------


def test_every_interval_since_the_start_date_runs_one_at_a_time(dagbag):
    from datetime import datetime, timezone

    from include.dag_defaults import DEFAULT_START_DATE

    dag = dagbag.dags["runcommand_ueba_breach"]
    assert dag.catchup is True and dag.max_active_runs == 1
    assert dag.start_date == datetime.fromisoformat(DEFAULT_START_DATE).replace(tzinfo=timezone.utc)


def test_default_start_date_is_the_demo_lakes_first_complete_window():
    """Unpausing the DAG on the demo lake must not catch up through years without data."""
    from datetime import date, timedelta

    from detection_tools import lakegen as demo
    from include.dag_defaults import DEFAULT_START_DATE

    first_interval_end = date.fromisoformat(DEFAULT_START_DATE) + timedelta(days=1)
    first_window_start = first_interval_end - load_rule().query_period
    assert first_window_start == demo.DEMO_START


PARSE = (
    "from airflow.dag_processing.dagbag import DagBag; import json; "
    "bag = DagBag(dag_folder={dags!r}); "
    "print(json.dumps([[str(d.start_date) for d in bag.dags.values()], "
    "list(bag.import_errors.values())]))"
)


def parse_with(**env) -> tuple[list, list]:
    import json
    import os

    out = subprocess.run(
        [sys.executable, "-c", PARSE.format(dags=str(REPO / "dags"))],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={**os.environ, **env},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_start_date_comes_from_detection_start_date():
    starts, errors = parse_with(DETECTION_START_DATE="2021-01-01")
    assert (starts, errors) == (["2021-01-01 00:00:00+00:00"], [])


def test_a_bad_start_date_is_an_import_error_naming_the_variable():
    starts, errors = parse_with(DETECTION_START_DATE="2021-13-01")
    assert starts == [] and len(errors) == 1
    assert "DETECTION_START_DATE='2021-13-01' is not an ISO date" in errors[0]


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2021-01-01", "2021-01-01T00:00:00+00:00"),
        (" 2026-11-05 ", "2026-11-05T00:00:00+00:00"),
        ("2021-13-01", "DETECTION_START_DATE='2021-13-01' is not an ISO date"),
        ("yesterday", "DETECTION_START_DATE='yesterday' is not an ISO date"),
        ("1969-12-31", "DETECTION_START_DATE='1969-12-31' is before 1970-01-01"),
    ],
    ids=["a date in 2021", "a date with spaces around it", "month 13", "not a date", "before 1970"],
)
def test_start_date_values(monkeypatch, value, expected):
    from include.dag_defaults import start_date
    from include.detection.errors import UsageError

    monkeypatch.setenv("DETECTION_START_DATE", value)
    try:
        got = start_date().isoformat()
    except UsageError as exc:
        got = str(exc)
    assert got.startswith(expected)


@pytest.mark.parametrize(
    "timeout, retries",
    [("0", 0), ("0min", 0), ("6h", 12), ("45m", 2)],
    ids=["0 fails at once", "0min fails at once", "6h waits 12 times 30 min", "45m waits twice"],
)
def test_extract_waits_for_an_incomplete_window_up_to_the_timeout(monkeypatch, timeout, retries):
    from include.dag_defaults import extract_args

    monkeypatch.setenv("DETECTION_COMPLETENESS_TIMEOUT", timeout)
    monkeypatch.delenv("DETECTION_COMPLETENESS_RETRY_DELAY", raising=False)
    assert extract_args()["retries"] == retries


@pytest.mark.parametrize(
    "var, value",
    [("DETECTION_COMPLETENESS_TIMEOUT", "6 hours"), ("DETECTION_COMPLETENESS_RETRY_DELAY", "0")],
    ids=["a timeout that is no timespan", "a zero retry delay"],
)
def test_a_bad_completeness_setting_is_an_error_naming_the_variable(monkeypatch, var, value):
    from include.dag_defaults import extract_args
    from include.detection.errors import UsageError

    monkeypatch.setenv(var, value)
    with pytest.raises(UsageError, match=var):
        extract_args()


def test_a_failed_task_notifies_and_a_late_run_raises_a_deadline_alert(dagbag):
    from datetime import timedelta

    from airflow.sdk import DeadlineReference

    from include.notifiers import DetectionNotifier

    dag = dagbag.dags["runcommand_ueba_breach"]
    for t in dag.tasks:
        if t.task_id == "examined":  # it fails only after a partition's task failed and told
            assert not t.on_failure_callback
            continue
        assert isinstance(
            t.on_failure_callback[0]
            if isinstance(t.on_failure_callback, list)
            else t.on_failure_callback,
            DetectionNotifier,
        ), t.task_id
    deadlines = dag.deadline if isinstance(dag.deadline, list) else [dag.deadline]
    assert len(deadlines) == 1
    late = deadlines[0]
    assert late.reference == DeadlineReference.DAGRUN_QUEUED_AT
    assert late.interval == timedelta(hours=6)
    assert late.callback.path == "include.notifiers.deadline_missed"


def test_the_deadline_survives_serialization(dagbag):
    """What the scheduler sees is the serialized DAG."""
    from airflow.serialization.serialized_objects import DagSerialization

    data = DagSerialization.to_dict(dagbag.dags["runcommand_ueba_breach"])
    text = str(data["dag"].get("deadline"))
    assert "DagRunQueuedAtDeadline" in text and "include.notifiers.deadline_missed" in text


def test_build_alerts_publishes_the_alerts_asset(dagbag):
    dag = dagbag.dags["runcommand_ueba_breach"]
    outlets = {t.task_id: [o.uri for o in t.outlets] for t in dag.tasks if t.outlets}
    assert outlets == {"build_alerts": ["detection://runcommand_ueba_breach/alerts"]}
