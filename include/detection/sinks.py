"""Delivering alerts from the outbox to ticketing destinations, each at most once per revision."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from . import config
from .errors import DeliveryError, UsageError
from .store import AlertStore

log = logging.getLogger(__name__)


class FileTickets:
    """One JSON file per ticket in a folder; the ticket reference is the file name.

    The file is named by the alert id, so a re-delivery rewrites the same ticket, never a second.
    """

    name = "file"

    def __init__(self, folder: Path | None = None):
        self.folder = Path(folder or config.ticket_dir())

    def deliver(self, alert: dict, ticket_ref: str | None) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        ref = ticket_ref or f"{alert['id']}.json"
        target = self.folder / ref
        tmp = self.folder / f".{ref}.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(alert, indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, target)
        return ref


DESTINATIONS = {"file": FileTickets}


def destination(name: str):
    try:
        return DESTINATIONS[name]()
    except KeyError:
        raise UsageError(f"unknown destination {name!r} (known: {', '.join(DESTINATIONS)})") from None


def deliver_pending(store: AlertStore, names: list[str] | None = None) -> dict:
    """Deliver every pending alert to each destination; one broken destination doesn't block
    the others. Raises DeliveryError at the end if anything is still pending."""
    report, failed = {}, {}
    for name in names or config.destinations():
        dest = destination(name)
        sent = 0
        for alert, ref in store.pending(name):
            try:
                new_ref = dest.deliver(alert, ref)
            except Exception as exc:  # any failure leaves the alert pending for the next attempt
                log.warning("delivery of alert %s to %s failed: %s", alert["id"], name, exc)
                store.mark_failed(alert["id"], name, f"{type(exc).__name__}: {exc}")
                failed[name] = failed.get(name, 0) + 1
                continue
            store.mark_delivered(alert["id"], name, new_ref, alert["revision"])
            sent += 1
        report[name] = {"delivered": sent, "failed": failed.get(name, 0)}
    if failed:
        raise DeliveryError(f"alerts still pending: {failed} (they will be retried)")
    return report
