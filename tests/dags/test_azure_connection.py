"""The DAG's Azure credential (issue #10 point 4): the Airflow connection of type `azure` named by
DETECTION_AZURE_CONN_ID (default azure_default), through the microsoft-azure provider's hook."""

import json

import pytest

from include.airflow_connections import azure_credential
from include.detection.errors import UsageError


def _conn(monkeypatch, conn_id: str, **fields):
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


@pytest.mark.parametrize(
    "conn_id, env",
    [("azure_default", None), ("tenant_b", "tenant_b")],
    ids=["default connection", "named by DETECTION_AZURE_CONN_ID"],
)
def test_a_service_principal_connection_gives_a_client_secret_credential(monkeypatch, conn_id, env):
    from azure.identity import ClientSecretCredential

    if env:
        monkeypatch.setenv("DETECTION_AZURE_CONN_ID", env)
    else:
        monkeypatch.delenv("DETECTION_AZURE_CONN_ID", raising=False)
    _conn(
        monkeypatch,
        conn_id,
        conn_type="azure",
        login="app-client-id",
        password="sp-secret-value-123",
        extra={"tenantId": "tenant-guid"},
    )
    credential = azure_credential()
    # an azure-identity object (what LogsQueryClient / KustoClient take), not the hook's legacy
    # ServicePrincipalCredentials, although the connection did not ask for one
    assert isinstance(credential, ClientSecretCredential)
    assert credential._client_id == "app-client-id"
    assert "sp-secret-value-123" not in repr(credential)


def test_a_managed_identity_connection_gives_default_azure_credential(monkeypatch):
    from azure.identity import DefaultAzureCredential

    monkeypatch.delenv("DETECTION_AZURE_CONN_ID", raising=False)
    _conn(
        monkeypatch,
        "azure_default",
        conn_type="azure",
        extra={"managed_identity_client_id": "mi-client-id"},
    )
    assert isinstance(azure_credential(), DefaultAzureCredential)


def test_no_connection_leaves_the_credential_to_the_library(monkeypatch):
    monkeypatch.delenv("DETECTION_AZURE_CONN_ID", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_AZURE_DEFAULT", raising=False)
    assert azure_credential() is None  # then DETECTION_LOGANALYTICS_TOKEN or DefaultAzureCredential


def test_a_connection_of_another_type_is_a_usage_error_naming_it(monkeypatch):
    monkeypatch.setenv("DETECTION_AZURE_CONN_ID", "not_azure")
    _conn(monkeypatch, "not_azure", conn_type="http", host="example.org", password="pw-12345")
    with pytest.raises(UsageError, match="'not_azure' is of type 'http', not 'azure'") as err:
        azure_credential()
    assert "pw-12345" not in str(err.value)
