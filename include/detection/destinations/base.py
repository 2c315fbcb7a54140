"""What every destination shares: settings (Airflow connection or environment), HTTP with
retries (requests + tenacity), the error kinds the outbox acts on, and redaction.

Settings of destination NAME, later sources winning:
1. environment: DETECTION_<NAME>_URL, _USER, _TOKEN / _PASSWORD, _SECRET, _PROJECT, ...;
2. the Airflow connection `DETECTION_<NAME>_CONN_ID` (default `detection_<name>`): the object the
   Airflow layer looked up and passed in, else `AIRFLOW_CONN_DETECTION_<NAME>` from the env;
3. explicit `settings` passed by the caller (tests, other tools).

HTTP tuning (per destination or global): DETECTION_HTTP_TIMEOUT (s, default 10),
DETECTION_HTTP_ATTEMPTS (default 4), DETECTION_HTTP_BACKOFF (first wait, s, default 1),
DETECTION_HTTP_MAX_WAIT (longest wait, s, default 30; a Retry-After beyond it is not waited for:
the alert stays pending for the next attempt). Each is checked against `HTTP_TUNING`'s bounds and
refused (UsageError naming the variable) outside them: a negative timeout, `nan` or `inf`, or a
billion attempts would otherwise turn into a hung or silent delivery.

Error messages carry a short, masked excerpt of a failing server's answer, never the body: servers
echo what they were sent (headers, URLs, credentials) in their errors.
"""

from __future__ import annotations

import email.utils
import logging
import math
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from ..connections import (
    Conn,
    from_env,
    mask_logger,
    redact,
    register_basic_auth,
    register_secret,
    register_url,
    snippet,
)
from ..errors import DeliveryError, DetectionError, UsageError
from ..text import formula_safe, printable, printable_lines

log = logging.getLogger("include.detection.destinations")
# urllib3 logs each request line, query string included, at DEBUG
for _name in ("urllib3", "urllib3.connectionpool", "urllib3.util.retry", "requests"):
    mask_logger(_name)

TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
USER_AGENT = "detection-engineering-alerts/1.0"


class DestinationError(DetectionError):
    """A delivery failed. `transient`: the destination is down or busy (timeouts, connection
    errors, 5xx, 429): the outbox stops trying it for this run and leaves its alerts pending.
    Otherwise the alert was refused (4xx): the outbox goes on with the next alert."""

    transient = False
    exit_code = DeliveryError.exit_code

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(redact(message))
        self.retry_after = retry_after


class TransientError(DestinationError):
    transient = True


class PermanentError(DestinationError):
    transient = False


def is_outage(exc: BaseException) -> bool:
    """Whether a failure means the destination itself is unavailable."""
    if isinstance(exc, DestinationError):
        return exc.transient
    return isinstance(exc, (OSError, TimeoutError, requests.RequestException))


@dataclass(frozen=True)
class Delivery:
    """What a destination did: the ticket reference and whether it created or updated it."""

    ticket_ref: str
    action: str  # created | updated


# setting -> (default, lowest, highest, lowest excluded, whole number)
HTTP_TUNING = {
    "timeout": (10.0, 0.0, 300.0, True, False),
    "attempts": (4, 1, 20, False, True),
    "backoff": (1.0, 0.0, 60.0, False, False),
    "max_wait": (30.0, 0.0, 3600.0, False, False),
}


def _float(
    value,
    default: float,
    name: str = "value",
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    whole: bool = False,
) -> float:
    """`value` as a number inside [low, high] (`low_open`: (low, high]), else UsageError naming
    `name`. nan and inf are refused: neither is a usable timeout, wait or count."""
    if value is None or value == "":
        return default
    shown = f"{name}={value!r}"
    try:
        number = float(str(value).strip()) if not isinstance(value, (int, float)) else float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{shown} is not a number") from None
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
    if not math.isfinite(number) or number > high or number < low or (low_open and number == low):
        raise UsageError(f"{shown} is out of range: it must be a number in {interval}")
    if whole and not number.is_integer():
        raise UsageError(f"{shown} must be a whole number in {interval}")
    return number


class Settings(dict):
    """Resolved settings, remembering where each came from (for error messages)."""

    def __init__(self, *args, origin: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.origin = dict(origin or {})


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Destination(ABC):
    """A ticketing destination. Subclasses set `name`, `ENV_KEYS` and implement `deliver`."""

    name = "destination"
    # settings key -> env suffix (DETECTION_<NAME>_<SUFFIX>); a connection maps onto the same keys
    ENV_KEYS: dict[str, str] = {}
    SECRET_KEYS = ("token", "password", "secret")
    # HTTP calls one delivery makes at most (for the claim lease)
    CALLS_PER_DELIVERY = 1

    def __init__(self, settings: dict | None = None, connection: Any = None):
        self.settings = self.resolve(settings, connection)
        for key in self.SECRET_KEYS:
            register_secret(self.settings.get(key))

    # --- settings ------------------------------------------------------------------------------

    @classmethod
    def conn_id(cls) -> str:
        return os.environ.get(f"DETECTION_{cls.name.upper()}_CONN_ID") or f"detection_{cls.name}"

    @classmethod
    def from_connection(cls, conn: Conn) -> dict:
        """Map an Airflow connection onto settings keys (subclasses extend)."""
        out = {
            "url": conn.base_url() if conn.host else None,
            "user": conn.login or None,
            "password": conn.password or None,
        }
        out.update({k: v for k, v in conn.extra.items() if v not in (None, "")})
        return out

    @classmethod
    def resolve(cls, settings: dict | None, connection: Any = None) -> dict:
        merged: dict = {}
        origin: dict[str, str] = {}
        for key, suffix in {
            **cls.ENV_KEYS,
            "timeout": "TIMEOUT",
            "attempts": "ATTEMPTS",
            "backoff": "BACKOFF",
            "max_wait": "MAX_WAIT",
        }.items():
            var = f"DETECTION_{cls.name.upper()}_{suffix}"
            value = os.environ.get(var) or None
            if value is None and key in HTTP_TUNING:
                var = f"DETECTION_HTTP_{suffix}"
                value = os.environ.get(var) or None
            if value is not None:
                merged[key], origin[key] = value, var
        conn = Conn.from_object(connection) if connection is not None else from_env(cls.conn_id())
        if conn is not None:
            for k, v in cls.from_connection(conn).items():
                if v is not None:
                    merged[k], origin[k] = v, f"connection {conn.conn_id or cls.conn_id()!r} {k}"
        for k, v in (settings or {}).items():
            if v is not None:
                merged[k], origin[k] = v, f"{cls.name} setting {k}"
        return Settings(merged, origin=origin)

    def require(self, *keys: str) -> None:
        missing = [k for k in keys if not self.settings.get(k)]
        if missing:
            env = ", ".join(
                f"DETECTION_{self.name.upper()}_{self.ENV_KEYS.get(k, k.upper())}" for k in missing
            )
            raise UsageError(
                f"destination {self.name!r} is not configured: missing "
                f"{', '.join(missing)} (set {env}, or the Airflow connection "
                f"{self.conn_id()!r})"
            )

    # --- delivery ------------------------------------------------------------------------------

    def max_duration(self) -> float:
        """Longest one `deliver` call can take (the claim lease must outlast it)."""
        return 60.0

    @abstractmethod
    def deliver(self, alert: dict, ticket_ref: str | None) -> Delivery | str:
        """Create the ticket, or update `ticket_ref`; returns its reference."""


class HttpDestination(Destination):
    """A destination over HTTP: one `requests.Session`, each `deliver_once` retried as a whole
    (so a timed-out create is followed by a search, never a blind second create)."""

    def __init__(self, settings: dict | None = None, connection: Any = None):
        super().__init__(settings, connection)
        s = self.settings
        origin = getattr(s, "origin", {})
        tuned = {
            key: _float(
                s.get(key),
                default,
                origin.get(key, f"{self.name} {key}"),
                low,
                high,
                low_open,
                whole,
            )
            for key, (default, low, high, low_open, whole) in HTTP_TUNING.items()
        }
        self.timeout, self.backoff, self.max_wait = (
            tuned["timeout"],
            tuned["backoff"],
            tuned["max_wait"],
        )
        self.attempts = int(tuned["attempts"])
        if s.get("url"):
            register_url(s["url"])  # ?token=... in a webhook URL, user:password@ in any
        self.session = requests.Session()
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})

    def max_duration(self) -> float:
        per_try = self.CALLS_PER_DELIVERY * self.timeout * 2  # connect + read timeouts
        return self.attempts * per_try + (self.attempts - 1) * self.max_wait + 30.0

    def use_basic_auth(self, user: str, password: str) -> None:
        """Basic auth, with the header value it puts on the wire registered as a secret (servers
        echo request headers in their errors)."""
        register_basic_auth(user, password)
        self.session.auth = (user, password)

    def use_bearer(self, token: str) -> None:
        register_secret(token)
        self.session.headers["Authorization"] = f"Bearer {token}"

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return self.settings["url"].rstrip("/") + "/" + path.lstrip("/")

    def request(
        self, method: str, path: str, allow: tuple[int, ...] = (), **kwargs
    ) -> requests.Response:
        """One HTTP call: the response if 2xx or in `allow`, else TransientError (timeouts,
        connection errors, 429, 5xx: retried) or PermanentError. Messages carry no secrets."""
        where = f"{self.name}: {method} {_shown(path)}"
        try:
            resp = self.session.request(method, self.url(path), timeout=self.timeout, **kwargs)
        except requests.Timeout:
            raise TransientError(f"{where}: timed out after {self.timeout:g} s") from None
        except requests.ConnectionError as exc:
            reason = type(getattr(exc.args[0], "reason", exc) if exc.args else exc).__name__
            raise TransientError(f"{where}: connection failed ({reason})") from None
        except requests.RequestException as exc:
            raise TransientError(f"{where}: {type(exc).__name__}") from None
        if 200 <= resp.status_code < 300 or resp.status_code in allow:
            return resp
        excerpt = snippet(_body_start(resp))
        message = f"{where}: HTTP {resp.status_code}" + (f" ({excerpt})" if excerpt else "")
        if resp.status_code in TRANSIENT_STATUS or resp.status_code >= 500:
            raise TransientError(message, retry_after_seconds(resp.headers.get("Retry-After")))
        raise PermanentError(message)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception()
        if getattr(exc, "retry_after", None) is not None:
            return exc.retry_after
        return wait_exponential_jitter(
            initial=self.backoff, max=self.max_wait, jitter=self.backoff
        )(state)

    def _retryable(self, exc: BaseException) -> bool:
        if not isinstance(exc, TransientError):
            return False
        if exc.retry_after is not None and exc.retry_after > self.max_wait:
            log.warning(
                "%s asks to retry after %.0f s (more than %.0f s): leaving it for the next attempt",
                self.name,
                exc.retry_after,
                self.max_wait,
            )
            return False
        return True

    def _before_sleep(self, state: RetryCallState) -> None:
        log.warning(
            "%s (attempt %d/%d); retrying in %.2f s",
            state.outcome.exception(),
            state.attempt_number,
            self.attempts,
            state.next_action.sleep,
        )

    def deliver(self, alert: dict, ticket_ref: str | None) -> Delivery:
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=self._wait,
            retry=retry_if_exception(self._retryable),
            before_sleep=self._before_sleep,
            reraise=True,
        )
        return retrying(self.deliver_once, alert, ticket_ref)

    @abstractmethod
    def deliver_once(self, alert: dict, ticket_ref: str | None) -> Delivery:
        """One attempt: search, then create or update (retried as a whole by `deliver`)."""


def _body_start(resp: requests.Response, limit: int = 8192) -> str:
    """The start of an answer's body as text, without decoding all of a huge one."""
    raw = resp.content[:limit]
    try:
        return raw.decode(resp.encoding or "utf-8", errors="replace")
    except LookupError:  # an unknown charset named by the server
        return raw.decode("utf-8", errors="replace")


def _shown(path: str) -> str:
    """A request target for messages: a relative API path as is; of a full URL only scheme and
    host (webhook URLs often carry a secret in their path or query)."""
    if "://" in path:
        parts = urlsplit(path)
        return (
            f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "") + "/..."
        )
    return path.split("?")[0]


# --- ticket text ----------------------------------------------------------------------------------


def summary_lines(alert: dict, max_evidence: int = 20) -> list[str]:
    """The alert as plain text lines, for ticket descriptions. Data values never start a line of
    their own: control characters in them are shown as escapes (`text.printable`), and the
    description, which starts with the caller's name, is made formula-safe line by line. Each
    sink still encodes the lines for its own markup (jira.description, servicenow.journal)."""
    description = [
        formula_safe(line) for line in printable_lines(alert.get("description", "")).split("\n")
    ]
    lines = [
        "",
        f"Severity: {alert['severity']}",
        f"Tactics: {', '.join(alert.get('tactics', []))}",
        f"Techniques: {', '.join(alert.get('techniques', []))}",
        f"Start: {alert.get('start_time')}  End: {alert.get('end_time')}",
        f"Window: {alert['window']['start']} .. {alert['window']['end']}",
        f"Rule: {alert.get('rule_name')} ({alert.get('rule_id')}, version "
        f"{alert.get('rule_version')})",
        f"Data quality: {alert.get('data_quality')}",
        f"Alert id: {alert['id']} (revision {alert.get('revision', 1)}, "
        f"fingerprint {alert.get('fingerprint', '')[:16]})",
        "",
        "Entities:",
    ]
    for e in alert.get("entities", []):
        lines.append(
            "- " + e["type"] + ": " + ", ".join(f"{k}={v}" for k, v in e.items() if k != "type")
        )
    lines += ["", "Custom details:"]
    for key, values in alert.get("custom_details", {}).items():
        shown = [v if isinstance(v, str) else _compact(v) for v in values]
        lines.append(f"- {key}: {'; '.join(shown)}")
    evidence = alert.get("evidence", [])
    lines += ["", f"Evidence ({len(evidence)} rows):"]
    for row in evidence[:max_evidence]:
        lines.append(
            f"- run command {row['StartTime']} .. {row['EndTime']} from {row['CallerIpAddress']}; "
            f"UEBA {row['UEBAActionType']} at {row['UEBAEventTime']} from "
            f"{row['UEBASourceIPLocation']}"
        )
    if len(evidence) > max_evidence:
        lines.append(f"- ... {len(evidence) - max_evidence} more (see the alert store)")
    return description + [printable(line) for line in lines]


def _compact(value) -> str:
    import json

    return json.dumps(value, sort_keys=True, ensure_ascii=False)
