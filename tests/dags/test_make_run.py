"""`make run DATE=...` (include/run_once.py around `airflow dags test`) is never a silent success:
a date before DETECTION_START_DATE is refused saying why, 2021 data with the start date moved
produces its alert, an incomplete window fails at once naming the gap (or, asked to wait, says
for what and until when), and a window without data yet exits non-zero saying so.

Each test runs the command the Makefile runs, in a subprocess, on the session's temp Airflow
metadata DB (tests/conftest.py) and a temp DETECTION_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from include.detection.store import open_store
from tests.conftest import REPO
from tests.factories import activity_row, run_command, ueba_row


def write_jsonl(folder, activity_rows, ueba_rows):
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("AzureActivity", activity_rows), ("BehaviorAnalytics", ueba_rows)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def make_run(date: str, home, source, **env) -> subprocess.CompletedProcess:
    """What `make run DATE=...` runs (see the Makefile), with this test's configuration."""
    config = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DETECTION_") or k == "DETECTION_TEST_POSTGRES"
    }
    config.update(
        DETECTION_HOME=str(home), DETECTION_SOURCE=str(source), PYTHONPATH=str(REPO), **env
    )
    return subprocess.run(
        [sys.executable, "-m", "include.run_once", date, "--log", str(home / "last-run.log")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=config,
        timeout=900,
    )


@pytest.fixture
def source_2021(tmp_path):
    """April 2021: one Run Command by Alice one hour after her uncommon sign-in (a true
    positive), and another command that failed."""
    activity = run_command("tp-2021", start="2021-04-28T10:00:00Z") + run_command(
        "failed-2021", start="2021-04-28T10:05:00Z", statuses=("Started", "Accepted", "Failed")
    )
    return write_jsonl(
        tmp_path / "source-2021", activity, [ueba_row(TimeGenerated="2021-04-28T09:00:00Z")]
    )


def test_make_runs_the_one_off_run_through_run_once():
    out = subprocess.run(
        ["make", "-n", "run", "DATE=2021-04-29"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    ).stdout
    assert "-m include.run_once 2021-04-29" in out


def test_a_date_before_the_start_date_exits_2_saying_why_and_how(tmp_path, source_2021):
    done = make_run("2021-04-29", tmp_path / "home", source_2021)
    assert done.returncode == 2, done.stdout + done.stderr
    assert (
        "the interval [2021-04-28 00:00, 2021-04-29 00:00) UTC is before "
        "DETECTION_START_DATE=2026-10-27"
    ) in done.stdout
    assert "DETECTION_START_DATE=2021-04-28 make run DATE=2021-04-29" in done.stdout
    assert "airflow backfill create" in done.stdout
    assert not (tmp_path / "home" / "last-run.log").exists(), "Airflow was not started"


@pytest.mark.parametrize(
    "env, expected",
    [
        (
            {"DETECTION_START_DATE": "2021-02-30"},
            "DETECTION_START_DATE='2021-02-30' is not an ISO date",
        ),
        ({}, "DATE='April 29' is not a date"),
    ],
    ids=["a start date that does not exist", "a DATE that is no date"],
)
def test_bad_configuration_exits_2_naming_it(tmp_path, source_2021, env, expected):
    date = "2021-04-29" if env else "April 29"
    done = make_run(date, tmp_path / "home", source_2021, **env)
    assert done.returncode == 2 and expected in done.stdout, done.stdout + done.stderr


@pytest.mark.slow
def test_2021_data_with_the_start_date_moved_produces_its_alert(tmp_path, source_2021, airflow_db):
    home = tmp_path / "home"
    done = make_run("2021-04-29", home, source_2021, DETECTION_START_DATE="2021-04-28")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "DAG run succeeded: all 10 tasks ran." in done.stdout
    with open_store(str(home / "alerts.db")) as store:
        alerts = store.alerts()
    assert [a["correlation_id"] for a in alerts] == ["tp-2021"]
    assert [t.stem for t in (home / "tickets").glob("*.json")] == [alerts[0]["id"]]


@pytest.fixture
def late_source(tmp_path):
    """AzureActivity every 15 min until 2026-10-31 12:00, then nothing: the window ending
    11-01 has a 12-hour gap at its end."""
    import pandas as pd

    times = pd.date_range("2026-10-30T00:10:00Z", "2026-10-31T12:00:00Z", freq="15min")
    rows = [
        activity_row(OperationNameValue="Microsoft.Storage/x/read", TimeGenerated=t.isoformat())
        for t in times
    ]
    return write_jsonl(tmp_path / "late", rows, [ueba_row()])


@pytest.mark.slow
def test_an_incomplete_window_fails_at_once_naming_the_gap(tmp_path, late_source, airflow_db):
    done = make_run("2026-11-01", tmp_path / "home", late_source)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "waiting" not in done.stdout
    assert (
        "extract_azure_activity: IncompleteDataError: data-quality gate failed: "
        "AzureActivity.TimeGenerated: no_gap failed"
    ) in done.stdout
    assert "fresh failed (observed: newest row 2026-10-31T11:55Z" in done.stdout


@pytest.mark.slow
def test_asked_to_wait_the_terminal_says_for_what_and_until_when(tmp_path, late_source, airflow_db):
    done = make_run(
        "2026-11-01",
        tmp_path / "home",
        late_source,
        DETECTION_COMPLETENESS_TIMEOUT="2s",
        DETECTION_COMPLETENESS_RETRY_DELAY="1s",
    )
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(
        line.startswith(
            "An incomplete window is waited for: extract tries again every "
            "0:00:01 up to 2 times, until about "
        )
        for line in lines
    )
    waits = [line for line in lines if "waiting for the data:" in line]
    assert len(waits) == 2 and "attempt 2 of 3 at about" in waits[0]
    assert "gives up at about" in waits[0]
    assert any("extract_azure_activity: IncompleteDataError" in line for line in lines)


@pytest.mark.slow
def test_a_window_without_data_yet_exits_3_saying_so(tmp_path, source_2021, airflow_db):
    done = make_run("2026-11-10", tmp_path / "home", source_2021)
    assert done.returncode == 3, done.stdout + done.stderr
    assert (
        "Nothing examined: no data yet for the interval [2026-11-09T00:00:00+00:00, "
        "2026-11-10T00:00:00+00:00)"
    ) in done.stdout
