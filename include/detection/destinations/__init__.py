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
- two workers at once never deliver the same alert to the same destination (claims); an
  alert another worker still holds at the end counts as pending here (that worker may have died:
  its claim ends with its lease, and a later attempt delivers it).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import Any, Callable

from .. import config
from ..connections import redact
from ..errors import DeliveryError, DetectionError, UsageError
from .base import (Delivery, Destination, DestinationError, HttpDestination, PermanentError,
                   TransientError, is_outage)
from .file import FileTickets
from .jira import Jira
from .servicenow import ServiceNow
from .webhook import Webhook

__all__ = ["DESTINATIONS", "Delivery", "Destination", "DestinationError", "FileTickets",
           "HttpDestination", "IncompleteDelivery", "Jira", "PermanentError", "ServiceNow", "TransientError", "Webhook",
           "deliver_pending", "destination", "known"]

log = logging.getLogger(__name__)

# name -> factory(settings=None, connection=None) returning an object with
# deliver(alert, ticket_ref) -> Delivery | str  (a plain factory() is accepted too)
DESTINATIONS: dict[str, Callable[..., Any]] = {
    "file": FileTickets, "webhook": Webhook, "jira": Jira, "servicenow": ServiceNow}


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
    return factory.conn_id() if isinstance(factory, type) and issubclass(factory, Destination) \
        and factory is not FileTickets else None


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


def deliver_pending(store, names: list[str] | None = None, settings: dict | None = None,
                    connections: dict | None = None, alert_ids: list[str] | None = None) -> dict:
    """Deliver every pending alert (or only `alert_ids`) to each destination in `names`
    (default DETECTION_DESTINATIONS). `settings` / `connections`: per destination name, explicit
    settings or an Airflow Connection object (the Airflow layer resolves those).

    Returns {name: {"delivered": n, "failed": m}} (failed = left pending); raises DeliveryError,
    carrying that report, if any alert is still pending anywhere."""
    names = list(names or config.destinations())
    known(names)
    settings, connections = settings or {}, connections or {}
    worker = _worker_id()
    report: dict[str, dict] = {}
    problems: list[str] = []
    for name in names:
        try:
            dest = destination(name, settings.get(name), connections.get(name))
        except DetectionError as exc:  # misconfigured: the others still get their alerts
            left = len(store.pending_ids(name, alert_ids))
            report[name] = {"delivered": 0, "failed": left, "error": redact(str(exc))}
            problems.append(f"{name}: {redact(str(exc))}")
            continue
        lease = float(getattr(dest, "max_duration", lambda: 60.0)()) + 60.0
        delivered = failed = 0
        busy: list[str] = []
        last_error = None
        ids = store.pending_ids(name, alert_ids)
        for position, alert_id in enumerate(ids):
            claim = store.claim(alert_id, name, worker, lease)
            if claim is None:  # delivered meanwhile, or another worker holds it
                busy.append(alert_id)
                continue
            try:
                result = _as_delivery(dest.deliver(claim.alert, claim.ticket_ref), claim.ticket_ref)
            except Exception as exc:  # noqa: BLE001 - any failure leaves the alert pending
                last_error = redact(f"{type(exc).__name__}: {exc}")
                store.mark_failed(alert_id, name, last_error, worker)
                failed += 1
                log.warning("delivery of alert %s to %s failed: %s", alert_id, name, last_error)
                if is_outage(exc):
                    skipped = len(ids) - position - 1
                    failed += skipped
                    if skipped:
                        log.warning("%s looks down: %d more alert(s) left pending for the next "
                                    "attempt", name, skipped)
                    break
                continue
            store.mark_delivered(alert_id, name, result.ticket_ref, claim.revision,
                                 claim.fingerprint, worker, result.action)
            delivered += 1
            log.info("alert %s -> %s %s (%s)", alert_id, name, result.ticket_ref, result.action)
        report[name] = {"delivered": delivered, "failed": failed}
        # Held by another worker and still pending: it may be delivering them now, or it died
        # and its claim lasts until the lease ends. Either way this run did not deliver them.
        in_flight = sorted(set(busy) & set(store.pending_ids(name, alert_ids))) if busy else []
        if in_flight:
            report[name]["in_flight"] = len(in_flight)
            problems.append(f"{name}: {len(in_flight)} alert(s) claimed by another worker, "
                            "not delivered yet")
        if failed:
            report[name]["error"] = last_error
            problems.append(f"{name}: {failed} alert(s) pending ({last_error})")
    if problems:
        raise IncompleteDelivery("delivery incomplete, alerts stay pending and will be delivered by "
                            "the next attempt: " + "; ".join(problems), report=report)
    return report
