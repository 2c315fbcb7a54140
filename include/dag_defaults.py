"""Default task arguments shared by every detection DAG (plain data: no Airflow import).

DETECTION_COMPLETENESS_TIMEOUT / DETECTION_COMPLETENESS_RETRY_DELAY (Kusto spans, default 6h /
30m): how long an extract waits for an incomplete window before failing as "incomplete data".
"""

import math
import os
from datetime import timedelta

from include.detection.rule import parse_timespan

DEFAULT_ARGS = {
    "owner": "detection-engineering",
    "retries": 2,
    "retry_delay": timedelta(minutes=5),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(hours=1),
}

_wait = parse_timespan(os.environ.get("DETECTION_COMPLETENESS_TIMEOUT", "6h"))
_delay = parse_timespan(os.environ.get("DETECTION_COMPLETENESS_RETRY_DELAY", "30m"))
EXTRACT_ARGS = {
    "retries": max(1, math.ceil(_wait / _delay)),
    "retry_delay": _delay,
    "retry_exponential_backoff": False,
}
