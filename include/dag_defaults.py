"""Default task arguments shared by every detection DAG (plain data: no Airflow import)."""

from datetime import timedelta

DEFAULT_ARGS = {
    "owner": "detection-engineering",
    "retries": 2,
    "retry_delay": timedelta(minutes=5),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(hours=1),
}
