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


def azure_credential(conn_id: str | None = None):
    """The azure-core TokenCredential of the Airflow connection of type `azure` named by
    DETECTION_AZURE_CONN_ID (default `azure_default`), as the microsoft-azure provider's
    AzureBaseHook builds it: a service principal (login = client id, password = secret, extra
    `tenantId`), or DefaultAzureCredential (managed identity: extra `managed_identity_client_id`;
    workload identity: `workload_identity_tenant_id`). None when there is no such connection:
    the library then uses DETECTION_LOGANALYTICS_TOKEN or DefaultAzureCredential itself.

    The hook hands out azure-identity objects (which the query SDKs need) only with the extra
    `use_azure_identity_object`; it is set here on a copy, so a connection made for other Azure
    hooks works unchanged."""
    import json
    import os

    import attrs

    from include.detection.errors import UsageError

    conn_id = conn_id or os.environ.get("DETECTION_AZURE_CONN_ID") or "azure_default"
    conn = airflow_connection(conn_id)
    if conn is None:
        return None
    if conn.conn_type != "azure":
        raise UsageError(
            f"Airflow connection {conn_id!r} is of type {conn.conn_type!r}, "
            f"not 'azure' (DETECTION_AZURE_CONN_ID)"
        )
    from airflow.providers.microsoft.azure.hooks.base_azure import AzureBaseHook

    extra = {**conn.extra_dejson, "use_azure_identity_object": True}
    copy = attrs.evolve(conn, extra=json.dumps(extra))  # the Task SDK's Connection is attrs
    return AzureBaseHook(conn_id=conn_id).get_credential(conn=copy)
