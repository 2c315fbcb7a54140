"""The Airflow side of configuration: Connections looked up through Airflow (metadata DB, secrets
backend or AIRFLOW_CONN_*). Kept out of include/detection, which never imports Airflow; Airflow
is imported inside the functions, so DAG parsing stays light."""

from __future__ import annotations


def airflow_connection(conn_id: str | None):
    """An Airflow Connection by id, or None."""
    if not conn_id:
        return None
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None


def alert_store_url() -> str:
    """DETECTION_ALERT_STORE as a URL: a path or URL as is, an Airflow connection id resolved."""
    from include.detection import config, connections

    return connections.resolve_store(config.alert_store(), airflow_connection)
