"""Log Analytics workspaces through the query API (azure-monitor-query 2.0.0, `LogsQueryClient`).

    loganalytics://<workspace-id>[,<workspace-id>...]

A workspace is its id (a GUID) or its Azure resource id (`/subscriptions/.../workspaces/<name>`,
queried through `query_resource`). Each workspace is queried on its own, so a failure names it.

Settings (environment):
  DETECTION_LOGANALYTICS_TOKEN      a static bearer token (development, tests); otherwise the
                                    `credential` passed in (the DAG's Airflow `azure` connection),
                                    else azure-identity's DefaultAzureCredential
  DETECTION_LOGANALYTICS_ENDPOINT   the API's base URL (default https://api.loganalytics.azure.com;
                                    sovereign clouds, tests); http:// only for a loopback host
  DETECTION_LOGANALYTICS_AUDIENCE   the token audience (default https://api.loganalytics.io, which
                                    both public hosts accept)
  DETECTION_LOGANALYTICS_SLICE / _MIN_SLICE   time slice per query (6h) / smallest split (1s)
  DETECTION_LOGANALYTICS_ATTEMPTS / _BACKOFF / _MAX_WAIT   retries of 429, 5xx and network errors
                                    (5 attempts, 2 s first backoff, 120 s longest wait; a
                                    Retry-After above it fails the scan rather than stall it)
  DETECTION_LOGANALYTICS_TIMEOUT    the server-side timeout asked for, s (180; the API's max 600)

Rows are read from the response's JSON, not from the SDK's converted rows: the SDK drops the 7th
fractional digit of datetimes and turns a null guid/timespan into the string "None".
Retries are tenacity's (as the destinations' are), with azure-core's own retry policy off: one
policy for both Kusto sources, 429 retried with or without Retry-After, 502/408 retried too, and
a Retry-After longer than the configured maximum fails clearly instead of sleeping.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from typing import Any
from urllib.parse import urlsplit

from .. import kusto
from ..connections import register_secret
from ..errors import UsageError
from .base import SPLIT_ON, Answer, QueryFailed, RemoteSource, is_loopback

DEFAULT_ENDPOINT = "https://api.loganalytics.azure.com"
DEFAULT_AUDIENCE = "https://api.loganalytics.io"
TRANSIENT = {408, 500, 502, 503, 504}


class StaticToken:
    """A TokenCredential holding one bearer token (DETECTION_LOGANALYTICS_TOKEN)."""

    def __init__(self, token: str, origin: str = "DETECTION_LOGANALYTICS_TOKEN"):
        register_secret(token)
        self._token, self.origin = token, origin

    def get_token(self, *scopes: str, **kwargs: Any):
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, int(time.time()) + 3600)

    def describe(self) -> str:
        claims = _jwt_claims(self._token)
        who = next(
            (f"{k}={claims[k]}" for k in ("upn", "unique_name", "appid", "oid") if claims.get(k)),
            None,
        )
        return f"the static bearer token from {self.origin}" + (f" ({who})" if who else "")

    def __repr__(self) -> str:
        return f"StaticToken({self.origin})"


def _jwt_claims(token: str) -> dict:
    """The (unverified) claims of a JWT, to name the principal; {} when it is not one."""
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}


def check_endpoint(url: str, setting: str = "DETECTION_LOGANALYTICS_ENDPOINT") -> str:
    """An https URL, or http to a loopback host (a bearer token never crosses a network in the
    clear); without a trailing /v1 (the SDK adds its API version)."""
    parts = urlsplit(url.strip())
    if not parts.hostname or parts.scheme not in ("http", "https"):
        raise UsageError(f"{setting}: not an http(s) URL: {url!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise UsageError(
            f"{setting}: plain http is allowed only for a loopback host, not "
            f"{parts.hostname!r}; use https"
        )
    base = f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")
    return base[:-3] if base.endswith("/v1") else base


def parse_url(url: str) -> list[str]:
    """The workspaces of `loganalytics://<id>[,<id>...]`, each checked."""
    scheme, sep, rest = url.partition("://")
    if scheme.lower() != "loganalytics" or not sep or not rest.strip(",/ "):
        raise UsageError(
            f"not a Log Analytics source URL: {url!r} "
            f"(expected loganalytics://<workspace-id>[,<workspace-id>...])"
        )
    items = [i.strip() for i in rest.split(",") if i.strip()]
    # loganalytics:///subscriptions/... and loganalytics://subscriptions/... both name a resource
    return [
        kusto.workspace_id("/" + i if i.lower().startswith("subscriptions/") else i) for i in items
    ]


class LogAnalyticsSource(RemoteSource):
    name = "loganalytics"
    env = "LOGANALYTICS"
    target_kind = "workspace"

    def __init__(
        self,
        workspaces,
        credential=None,
        client=None,
        endpoint: str | None = None,
        audience: str | None = None,
        **settings,
    ):
        super().__init__([kusto.workspace_id(w) for w in workspaces], **settings)
        self.endpoint = check_endpoint(
            endpoint or os.environ.get("DETECTION_LOGANALYTICS_ENDPOINT") or DEFAULT_ENDPOINT
        )
        self.audience = (
            audience or os.environ.get("DETECTION_LOGANALYTICS_AUDIENCE") or DEFAULT_AUDIENCE
        )
        token = os.environ.get("DETECTION_LOGANALYTICS_TOKEN")
        if credential is None and token:
            credential = StaticToken(token)
        self._credential = credential
        self._client = client

    @classmethod
    def from_url(cls, url: str, credential=None, client=None, **settings) -> "LogAnalyticsSource":
        return cls(parse_url(url), credential=credential, client=client, **settings)

    def only(self, workspace: str) -> "LogAnalyticsSource":
        """This source for one of its workspaces (one mapped task per workspace)."""
        workspace = kusto.workspace_id(workspace)
        if workspace not in self.targets:
            raise UsageError(f"workspace {workspace} is not one of {', '.join(self.targets)}")
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__, targets=[workspace])
        return clone

    # --- the client -------------------------------------------------------------------------------

    @property
    def credential(self):
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        return self._credential

    @property
    def client(self):
        if self._client is None:
            from azure.monitor.query import LogsQueryClient

            quiet_sdk_logs()
            # retry_total=0: retries are ours (see the module docstring). The read timeout
            # outlasts the server-side one, so the server's own timeout answer arrives.
            self._client = LogsQueryClient(
                self.credential,
                endpoint=self.endpoint,
                audience=self.audience,
                retry_total=0,
                connection_timeout=30,
                read_timeout=self.server_timeout + 30,
            )
        return self._client

    def identity(self) -> str:
        credential = self._credential
        if credential is None:
            return "DefaultAzureCredential (no credential was configured)"
        if isinstance(credential, StaticToken):
            return credential.describe()
        client_id = os.environ.get("AZURE_CLIENT_ID")
        return type(credential).__name__ + (f" (AZURE_CLIENT_ID={client_id})" if client_id else "")

    def permission_hint(self) -> str:
        return (
            "the identity needs the Log Analytics Reader role (or "
            "Microsoft.OperationalInsights/workspaces/query/read) on the workspace"
        )

    # --- one query --------------------------------------------------------------------------------

    def execute(self, workspace: str, query: str) -> Answer:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ServiceRequestError,
            ServiceResponseError,
        )

        seen: dict = {}
        options: dict = {
            "timespan": None,  # the window is in the query text, at 100 ns
            "server_timeout": self.server_timeout,
            "raw_response_hook": lambda pipeline_response: seen.update(
                response=pipeline_response.http_response
            ),
            # The rows are read from the body below: no SDK conversion of every row.
            "cls": lambda pipeline_response, deserialized, headers: {},
        }
        if urlsplit(self.endpoint).scheme == "http":  # loopback only (check_endpoint)
            options["enforce_https"] = False
        call = (
            self.client.query_resource if workspace.startswith("/") else self.client.query_workspace
        )
        try:
            call(workspace, query, **options)
        except HttpResponseError as exc:
            response = seen.get("response") or getattr(exc, "response", None)
            status = getattr(response, "status_code", None) or exc.status_code
            if status is None:  # no HTTP answer: the credential could not get a token
                kind = "denied" if isinstance(exc, ClientAuthenticationError) else "transient"
                raise QueryFailed(kind, _first_line(exc)) from None
            if 200 <= status < 300:  # a success status whose body the SDK could not decode
                raise _not_json(response) from None
            raise _failure(status, response) from None
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise QueryFailed("transient", f"{type(exc).__name__}: {_first_line(exc)}") from None
        except ValueError:
            # A 204 (a workspace without data) or an empty 200 body: the SDK's JSON parse fails.
            response = seen.get("response")
            if response is None or not response.body():
                return Answer([], [], 0)
            raise _not_json(response) from None
        response = seen["response"]
        body = response.body()
        if not body:
            return Answer([], [], 0)
        return _answer(json.loads(body), len(body))


def quiet_sdk_logs() -> None:
    """azure-core logs every request's and response's headers at INFO; the source logs one line
    per query itself. Left alone when the logger was configured explicitly."""
    sdk = logging.getLogger("azure.core.pipeline.policies.http_logging_policy")
    if sdk.level == logging.NOTSET:
        sdk.setLevel(logging.WARNING)


def _not_json(response) -> QueryFailed:
    """An answer that is not the service's JSON (e.g. a proxy's HTML page): retried."""
    body = (response.body() if response is not None else b"") or b""
    snippet = " ".join(body[:120].decode("utf-8", "replace").split())
    return QueryFailed(
        "transient", f"the answer is not JSON ({snippet!r})", getattr(response, "status_code", None)
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _error_text(payload: Any) -> str:
    """`code: message` of an error body, from its innermost error."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return ""
    code, message, inner = error.get("code"), error.get("message"), error
    while isinstance(inner, dict):
        message = inner.get("message") or message
        details = inner.get("details")
        nxt = inner.get("innererror")
        if nxt is None and isinstance(details, list) and details and isinstance(details[0], dict):
            nxt = details[0].get("innererror") or details[0]
            if nxt is inner:
                break
        inner = nxt
    return ": ".join(str(p) for p in (code, message) if p)


def _failure(status: int, response) -> QueryFailed:
    from ..destinations.base import retry_after_seconds

    body = b""
    try:
        body = response.body() or b""
        payload = json.loads(body)
    except (ValueError, AttributeError):
        payload = None
    text = (
        _error_text(payload)
        or " ".join(body[:200].decode("utf-8", "replace").split())
        or "no error body"
    )
    if status in (401, 403):
        return QueryFailed("denied", text, status)
    if status == 429:
        headers = getattr(response, "headers", {}) or {}
        return QueryFailed(
            "throttled", text, status, retry_after_seconds(headers.get("Retry-After"))
        )
    if status in TRANSIENT or status >= 500:
        return QueryFailed("transient", text, status)
    return QueryFailed("rejected", text, status)


def _answer(payload: dict, nbytes: int) -> Answer:
    tables = payload.get("tables") or []
    table = next(
        (t for t in tables if t.get("name") == "PrimaryResult"),
        tables[0] if tables else {"columns": [], "rows": []},
    )
    columns = [(c["name"], c.get("type", "string")) for c in table.get("columns", [])]
    truncated = None
    if payload.get("error"):
        text = json.dumps(payload["error"])
        reason = _error_text(payload)
        if not any(code in text for code in SPLIT_ON):
            # A partial answer for another reason: never accepted, and not split.
            raise QueryFailed("rejected", f"partial answer ({reason})", 200)
        truncated = reason
    return Answer(columns, table.get("rows") or [], nbytes, truncated)
