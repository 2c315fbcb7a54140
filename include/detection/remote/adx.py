"""Azure Data Explorer (Kusto) clusters through azure-kusto-data, with the same queries as Log
Analytics (include/detection/kusto.py renders both).

    kusto://<cluster-host>[:port]/<database>
    kusto://ade.loganalytics.io/subscriptions/<id>/resourcegroups/<rg>/providers/
            microsoft.operationalinsights/workspaces/<name>/<name>  (a workspace's ADX proxy)

The last path segment is the database, what precedes it the cluster URL's path. A loopback host
is reached over plain http without authentication (`duckdb-kql serve`, tests); any other host over
https with an Azure token credential: the `credential` passed in (the DAG's connection),
else a static token from DETECTION_KUSTO_TOKEN, else DefaultAzureCredential.

Settings: DETECTION_KUSTO_SLICE, _MIN_SLICE, _ATTEMPTS, _BACKOFF, _MAX_WAIT, _TIMEOUT, as for
Log Analytics (include/detection/remote/loganalytics.py). azure-kusto-data has no retry of its
own; the shared tenacity policy retries throttling, 5xx and network errors.
"""

from __future__ import annotations

import json
import os
import re
from datetime import timedelta
from urllib.parse import urlsplit

from ..errors import UsageError
from .base import SPLIT_ON, Answer, QueryFailed, RemoteSource, is_loopback
from .loganalytics import TRANSIENT, StaticToken, quiet_sdk_logs

_DATABASE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_ .\-]{0,259}")


def parse_url(url: str) -> tuple[str, str]:
    """(cluster URL, database) of `kusto://host[:port][/path]/<database>`."""
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    if parts.scheme.lower() != "kusto" or not parts.hostname or not segments:
        raise UsageError(
            f"not an Azure Data Explorer source URL: {url!r} "
            f"(expected kusto://<cluster-host>[:port]/<database>)"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise UsageError(
            "kusto:// URLs carry no credentials or options: credentials come from "
            "the connection, DETECTION_KUSTO_TOKEN or the Azure identity"
        )
    database = segments[-1]
    if not _DATABASE.fullmatch(database):
        raise UsageError(f"not a Kusto database name: {database!r}")
    scheme = "http" if is_loopback(parts.hostname) else "https"
    path = "/".join(segments[:-1])
    return f"{scheme}://{parts.netloc}" + (f"/{path}" if path else ""), database


class AdxSource(RemoteSource):
    name = "kusto"
    env = "KUSTO"
    target_kind = "database"

    def __init__(self, cluster: str, database: str, credential=None, client=None, **settings):
        super().__init__([database], **settings)
        self.cluster = cluster
        token = os.environ.get("DETECTION_KUSTO_TOKEN")
        if credential is None and token:
            credential = StaticToken(token, "DETECTION_KUSTO_TOKEN")
        self._credential = credential
        self._client = client
        self._bytes: list[int] = []

    @classmethod
    def from_url(cls, url: str, credential=None, client=None, **settings) -> "AdxSource":
        cluster, database = parse_url(url)
        return cls(cluster, database, credential=credential, client=client, **settings)

    @property
    def url(self) -> str:
        host = urlsplit(self.cluster)
        return f"kusto://{host.netloc}{host.path}/{self.targets[0]}"

    def describe(self, target: str) -> str:
        return f"database {target} on {self.cluster}"

    @property
    def client(self):
        if self._client is None:
            from azure.kusto.data import KustoClient, KustoConnectionStringBuilder

            quiet_sdk_logs()
            if self.cluster.startswith("http://"):  # loopback only (parse_url)
                kcsb = KustoConnectionStringBuilder.with_no_authentication(self.cluster)
            else:
                if self._credential is None:
                    from azure.identity import DefaultAzureCredential

                    self._credential = DefaultAzureCredential()
                kcsb = KustoConnectionStringBuilder.with_azure_token_credential(
                    self.cluster, self._credential
                )
            self._client = KustoClient(kcsb)
            session = getattr(self._client, "_session", None)  # answer sizes for the log line
            if session is not None:
                session.hooks["response"].append(
                    lambda response, *a, **k: self._bytes.append(len(response.content or b""))
                )
        return self._client

    def identity(self) -> str:
        if self.cluster.startswith("http://"):
            return "no authentication (loopback)"
        if isinstance(self._credential, StaticToken):
            return self._credential.describe()
        return (
            type(self._credential).__name__
            if self._credential is not None
            else "DefaultAzureCredential"
        )

    def permission_hint(self) -> str:
        return "the identity needs the Viewer role on the database"

    def execute(self, database: str, query: str) -> Answer:
        from azure.kusto.data import ClientRequestProperties
        from azure.kusto.data.exceptions import (
            KustoAuthenticationError,
            KustoMultiApiError,
            KustoNetworkError,
            KustoServiceError,
            KustoThrottlingError,
        )

        properties = ClientRequestProperties()
        properties.set_option("servertimeout", timedelta(seconds=self.server_timeout))
        client = self.client
        self._bytes.clear()
        try:
            response = client.execute_query(database, query, properties)
        except KustoThrottlingError as exc:
            raise QueryFailed(
                "throttled",
                str(exc.args[0]),
                429,
                _retry_after(exc.args[1] if len(exc.args) > 1 else None),
            ) from None
        except KustoAuthenticationError as exc:
            raise QueryFailed("denied", f"no token ({type(exc.exception).__name__})") from None
        except KustoNetworkError as exc:
            raise QueryFailed("transient", str(exc)) from None
        except KustoMultiApiError as exc:
            # Errors inside a 200 answer: a result too large for one answer is split
            text = " ".join(f"{e.code}: {e.description or e.message}" for e in exc.get_api_errors())
            if any(code in text for code in SPLIT_ON):
                return Answer([], [], None, text)
            raise QueryFailed("rejected", text or str(exc), 200) from None
        except KustoServiceError as exc:
            status = getattr(exc.http_response, "status_code", None)
            text = " ".join(str(exc).split())[:500]
            if status in (401, 403):
                raise QueryFailed("denied", text, status) from None
            if status == 429:
                raise QueryFailed(
                    "throttled", text, status, _retry_after(exc.http_response)
                ) from None
            if status is None or status in TRANSIENT or status >= 500:
                raise QueryFailed("transient", text, status) from None
            raise QueryFailed("rejected", text, status) from None
        primary = response.primary_results
        if not primary:
            return Answer([], [], sum(self._bytes) if self._bytes else None)
        table = primary[0]
        columns = [(c.column_name, c.column_type) for c in table.columns]
        rows = [[_wire(v) for v in row] for row in table.raw_rows]
        return Answer(columns, rows, sum(self._bytes) if self._bytes else None)


def _wire(value):
    """ADX sends dynamic values as JSON values; the frame wants their JSON text (as Log
    Analytics sends it). Strings, numbers, booleans and null pass as they are."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return value


def _retry_after(response) -> float | None:
    from ..destinations.base import retry_after_seconds

    headers = getattr(response, "headers", None) or {}
    return retry_after_seconds(headers.get("Retry-After"))
