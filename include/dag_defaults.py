"""Default task arguments and schedule settings shared by every detection DAG (plain data: no
Airflow import, so parsing stays light). A bad value is a UsageError naming the variable, raised
at parse time: Airflow shows it as the DAG file's import error.

DETECTION_START_DATE (ISO date, default 2026-10-27): the first daily interval the scheduler runs;
with catch-up on, unpausing the DAG (or restarting a scheduler that was down) runs every interval
from there (or from the last run) up to now. The default is the demo lake's first interval whose
2-day window it covers whole; set it to the day the detection goes live. Intervals before it are
run by back-fills (`airflow backfill create`), which Airflow does not clip to the start date, not
by `airflow dags test` (it would create the run without a task: `make run` refuses such a date).

DETECTION_COMPLETENESS_TIMEOUT / DETECTION_COMPLETENESS_RETRY_DELAY (Kusto spans, default 6h /
30m): how long an extract waits for an incomplete window before failing as "incomplete data";
a timeout of 0 fails at once (what `make run` uses).

DETECTION_RUN_DEADLINE (Kusto span, default 6h): a run not finished this long after it was queued
raises a deadline alert; 0 attaches none. `airflow dags test` cannot run a DAG that has one
(apache/airflow#73428: the run succeeds, then the command crashes), so `make run` sets 0; a
`dags test` run has no scheduler to watch its deadline anyway.
"""

import math
import os
import re
from datetime import date, datetime, timedelta, timezone

from include.detection.errors import UsageError
from include.detection.rule import parse_timespan

DEFAULT_START_DATE = "2026-10-27"

DEFAULT_ARGS = {
    "owner": "detection-engineering",
    "retries": 2,
    "retry_delay": timedelta(minutes=5),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(hours=1),
}


def start_date(value: str | None = None) -> datetime:
    """DETECTION_START_DATE (or `value`) as 00:00 UTC of that day."""
    var = "DETECTION_START_DATE"
    text = (os.environ.get(var) or DEFAULT_START_DATE) if value is None else value
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"{var}={text!r} is not an ISO date (YYYY-MM-DD, e.g. 2021-01-01)"
        ) from None
    if day.year < 1970:  # the scans hold times as nanoseconds since 1970 (pipeline.EARLIEST)
        raise UsageError(f"{var}={text!r} is before 1970-01-01")
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)


def _span(var: str, default: str, zero_ok: bool) -> timedelta:
    text = os.environ.get(var) or default
    if zero_ok and re.fullmatch(r"\s*0+(\.0*)?\s*(d|h|m|s|ms|min)?\s*", text):
        return timedelta(0)
    try:
        return parse_timespan(text.strip())
    except UsageError as exc:
        raise UsageError(f"{var}: {exc}") from None


def extract_args() -> dict:
    """The extract tasks' retries: wait for an incomplete window up to the timeout."""
    wait = _span("DETECTION_COMPLETENESS_TIMEOUT", "6h", zero_ok=True)
    delay = _span("DETECTION_COMPLETENESS_RETRY_DELAY", "30m", zero_ok=False)
    return {
        "retries": math.ceil(wait / delay),
        "retry_delay": delay,
        "retry_exponential_backoff": False,
    }


def run_deadline() -> timedelta | None:
    """DETECTION_RUN_DEADLINE, read when the DAG file is parsed; None when 0."""
    span = _span("DETECTION_RUN_DEADLINE", "6h", zero_ok=True)
    return span or None


START_DATE = start_date()
EXTRACT_ARGS = extract_args()
