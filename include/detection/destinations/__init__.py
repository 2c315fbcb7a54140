"""Ticketing destinations, by name (DETECTION_DESTINATIONS=file,webhook,jira,servicenow), and the
outbox loop that delivers pending alerts to them.

`deliver_pending` goes destination by destination, alert by alert: claim the alert in the store,
deliver it (the destination retries timeouts, 5xx and 429 itself, honouring Retry-After), record
the ticket reference. Guarantees:
- a delivery that succeeded is never repeated (the store records the revision delivered);
- a destination that is down (retries exhausted) is left alone for the rest of this run, its
  alerts stay pending, and DeliveryError is raised at the end, after every other destination
  had its turn: the task / command fails visibly and the next attempt delivers them;
- an alert a destination refuses (4xx) stays pending too, and does not stop the others;
- two workers at once never deliver the same alert to the same destination (claims, renewed by a
  heartbeat while the worker lives); an alert another worker holds is waited for, and taken over
  if that worker died (its claim ends one lease, DETECTION_CLAIM_LEASE, after its last beat), so
  concurrent workers all succeed when every alert got delivered.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any, Callable

from .. import config
from ..connections import redact
from ..errors import DeliveryError, DetectionError, UsageError
from .base import (
    Delivery,
    Destination,
    DestinationError,
    HttpDestination,
    PermanentError,
    TransientError,
    is_outage,
)
from .file import FileTickets
from .jira import Jira
from .servicenow import ServiceNow
from .webhook import Webhook

__all__ = [
    "DESTINATIONS",
    "Delivery",
    "Destination",
    "DestinationError",
    "FileTickets",
    "HttpDestination",
    "IncompleteDelivery",
    "Jira",
    "PermanentError",
    "ServiceNow",
    "TransientError",
    "Webhook",
    "deliver_pending",
    "destination",
    "known",
    "redeliver",
]

log = logging.getLogger(__name__)

# name -> factory(settings=None, connection=None) returning an object with
# deliver(alert, ticket_ref) -> Delivery | str  (a plain factory() is accepted too)
DESTINATIONS: dict[str, Callable[..., Any]] = {
    "file": FileTickets,
    "webhook": Webhook,
    "jira": Jira,
    "servicenow": ServiceNow,
}


class IncompleteDelivery(DeliveryError):
    """DeliveryError with the per-destination report of the run that raised it."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


def known(names: list[str]) -> None:
    unknown = [n for n in names if n not in DESTINATIONS]
    if unknown:
        raise UsageError(f"unknown destination {unknown[0]!r} (known: {', '.join(DESTINATIONS)})")


def conn_id(name: str) -> str | None:
    """The Airflow connection id destination `name` reads, if it reads one."""
    factory = DESTINATIONS.get(name)
    return (
        factory.conn_id()
        if isinstance(factory, type)
        and issubclass(factory, Destination)
        and factory is not FileTickets
        else None
    )


def destination(name: str, settings: dict | None = None, connection: Any = None):
    known([name])
    factory = DESTINATIONS[name]
    if settings is None and connection is None:
        return factory()
    return factory(settings=settings, connection=connection)


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _as_delivery(result, previous_ref: str | None) -> Delivery:
    if isinstance(result, Delivery):
        return result
    return Delivery(str(result), "updated" if previous_ref else "created")


def claim_lease() -> float:
    """Seconds a claim lasts without a heartbeat (DETECTION_CLAIM_LEASE, default 30): how long
    the alerts of a worker that was killed mid-delivery wait before another worker takes them.
    A live worker renews its claim every third of it, however long its delivery takes."""
    raw = os.environ.get("DETECTION_CLAIM_LEASE") or "30"
    try:
        lease = float(raw)
    except ValueError:
        lease = float("nan")
    if not 1 <= lease <= 3600:  # also false for nan
        raise UsageError(f"DETECTION_CLAIM_LEASE={raw!r}: give seconds between 1 and 3600")
    return lease


class _Heartbeat:
    """Renews this worker's claims from a thread with its own store connection (SQLite and
    psycopg connections are not to be shared by two threads in a transaction)."""

    def __init__(self, store, worker: str, lease: float):
        self.worker, self.lease = worker, lease
        self._stop = threading.Event()
        self._url = getattr(store, "url", None)
        self._thread = threading.Thread(target=self._run, name="claim-heartbeat", daemon=True)

    def __enter__(self):
        if self._url:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        from ..store import AlertStore

        try:
            beat = AlertStore(self._url)
        except Exception as exc:  # noqa: BLE001 - without a beat the lease still bounds a claim
            log.warning(
                "claim heartbeat unavailable (%s): claims last %.0f s", redact(exc), self.lease
            )
            return
        with beat:
            while not self._stop.wait(self.lease / 3):
                try:
                    beat.renew(self.worker, self.lease)
                except Exception as exc:  # noqa: BLE001 - a missed beat only shortens the claim
                    log.warning("claim heartbeat failed: %s", redact(exc))


def deliver_pending(
    store,
    names: list[str] | None = None,
    settings: dict | None = None,
    connections: dict | None = None,
    alert_ids: list[str] | None = None,
) -> dict:
    """Deliver every pending alert (or only `alert_ids`) to each destination in `names`
    (default DETECTION_DESTINATIONS). `settings` / `connections`: per destination name, explicit
    settings or an Airflow Connection object (the Airflow layer resolves those).

    An alert another worker holds is skipped, then waited for: it is this run's failure only if
    it is still undelivered once that claim has ended (delivered, released, or expired because
    the worker died, at most `claim_lease()` after its last heartbeat), and then this worker
    delivers it itself.

    Returns {name: {"delivered": n, "failed": m}} (failed = left pending); raises DeliveryError,
    carrying that report, if any alert is still pending anywhere."""
    names = list(names or config.destinations())
    known(names)
    settings, connections = settings or {}, connections or {}
    worker = _worker_id()
    lease = claim_lease()
    report: dict[str, dict] = {}
    problems: list[str] = []
    with _Heartbeat(store, worker, lease):
        for name in names:
            try:
                dest = destination(name, settings.get(name), connections.get(name))
            except DetectionError as exc:  # misconfigured: the others still get their alerts
                left = len(store.pending_ids(name, alert_ids))
                report[name] = {"delivered": 0, "failed": left, "error": redact(str(exc))}
                problems.append(f"{name}: {redact(str(exc))}")
                continue
            outcome = _Outbox(store, name, dest, worker, lease).run(alert_ids)
            report[name] = outcome.report()
            if outcome.in_flight:
                problems.append(
                    f"{name}: {len(outcome.in_flight)} alert(s) still claimed by "
                    "another worker after waiting for it, not delivered yet"
                )
            if outcome.failed:
                problems.append(f"{name}: {outcome.failed} alert(s) pending ({outcome.last_error})")
    if problems:
        raise IncompleteDelivery(
            "delivery incomplete, alerts stay pending and will be delivered by "
            "the next attempt: " + "; ".join(problems),
            report=report,
        )
    return report


class _Outbox:
    """One destination's share of a delivery run."""

    def __init__(self, store, name: str, dest, worker: str, lease: float):
        self.store, self.name, self.dest, self.worker, self.lease = store, name, dest, worker, lease
        self.delivered = self.failed = 0
        self.last_error: str | None = None
        self.in_flight: list[str] = []
        self.down = False

    def report(self) -> dict:
        out = {"delivered": self.delivered, "failed": self.failed}
        if self.in_flight:
            out["in_flight"] = len(self.in_flight)
        if self.failed:
            out["error"] = self.last_error
        return out

    def run(self, alert_ids: list[str] | None) -> "_Outbox":
        ids = self.store.pending_ids(self.name, alert_ids)
        busy = []
        for position, alert_id in enumerate(ids):
            if not self._deliver(alert_id, busy):
                left = len(ids) - position - 1
                self.failed += left
                if left:
                    log.warning(
                        "%s looks down: %d more alert(s) left pending for the next attempt",
                        self.name,
                        left,
                    )
                return self
        self._wait_for_others(busy)
        return self

    def _deliver(self, alert_id: str, busy: list[str]) -> bool:
        """Claim and deliver one alert; False when the destination looks down."""
        claim = self.store.claim(alert_id, self.name, self.worker, self.lease)
        if claim is None:  # delivered meanwhile, or another worker holds it
            busy.append(alert_id)
            return True
        try:
            result = _as_delivery(
                self.dest.deliver(claim.alert, claim.ticket_ref), claim.ticket_ref
            )
        except Exception as exc:  # noqa: BLE001 - any failure leaves the alert pending
            self.last_error = redact(f"{type(exc).__name__}: {exc}")
            self.store.mark_failed(alert_id, self.name, self.last_error, self.worker)
            self.failed += 1
            log.warning(
                "delivery of alert %s to %s failed: %s", alert_id, self.name, self.last_error
            )
            return not is_outage(exc)
        self.store.mark_delivered(
            alert_id,
            self.name,
            result.ticket_ref,
            claim.revision,
            claim.fingerprint,
            self.worker,
            result.action,
        )
        self.delivered += 1
        log.info("alert %s -> %s %s (%s)", alert_id, self.name, result.ticket_ref, result.action)
        return True

    def _wait_for_others(self, busy: list[str]) -> None:
        """Alerts other workers held: done when they delivered them; taken over when their claim
        ended without a delivery. Bounded by one delivery of ours plus a lease: a live worker's
        delivery takes no longer than ours may, a dead one's claim ends within a lease."""
        deadline = (
            time.monotonic()
            + float(getattr(self.dest, "max_duration", lambda: 60.0)())
            + self.lease
        )
        while busy:
            busy = self.store.pending_ids(self.name, busy)
            if not busy:
                return
            if time.monotonic() > deadline:
                self.in_flight = busy
                return
            time.sleep(min(1.0, self.lease / 3))
            still: list[str] = []
            for alert_id in busy:
                if not self._deliver(alert_id, still):
                    self.failed += len(busy) - busy.index(alert_id) - 1
                    return
            busy = still


def redeliver(
    store,
    alert_id: str | None = None,
    names: list[str] | None = None,
    force: bool = False,
    connections: dict | None = None,
) -> dict:
    """`alerts redeliver [ID]` and the UI's "redeliver": deliver what is pending (or, with
    `force`, everything again: each destination updates the ticket it has) for one alert, or for
    all when `alert_id` is None. An empty id is a usage error, never "all alerts"."""
    if alert_id is not None and not str(alert_id).strip():
        raise UsageError("redeliver: the alert id is empty (give an id, or none for every alert)")
    targets = list(names or config.destinations())
    known(targets)
    if alert_id is not None and store.get(alert_id) is None:
        raise UsageError(f"no alert with id {alert_id!r}")
    if force:
        store.reset(targets, alert_id)
    return deliver_pending(
        store,
        targets,
        connections=connections,
        alert_ids=[alert_id] if alert_id is not None else None,
    )
