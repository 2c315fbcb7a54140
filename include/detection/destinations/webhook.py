"""`webhook`: the alert as a signed JSON POST.

Settings: url (DETECTION_WEBHOOK_URL, or the connection `detection_webhook`'s host/path) and
secret (DETECTION_WEBHOOK_SECRET, or the connection's password), plus the HTTP tuning.

Request: `{"event": "alert.created"|"alert.updated", "delivery_id": "<alert id>:<revision>",
"alert": {...}}` with headers
- `X-Detection-Timestamp`: Unix seconds;
- `X-Detection-Signature-256`: `sha256=` + hex HMAC-SHA256(secret, timestamp + "." + body);
- `Idempotency-Key`: the delivery id (a retried POST after a timeout may arrive twice: the
  receiver drops repeats of the same delivery id).

The ticket reference is the receiver's `id` / `key` / `ticket` from a JSON answer, else the alert
id.
Messages name only the URL's scheme and host, and a long URL path (a capability URL, as chat
webhooks use) is masked like a secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import urlsplit

from ..connections import register_secret
from .base import Delivery, HttpDestination

SIGNATURE_HEADER = "X-Detection-Signature-256"
TIMESTAMP_HEADER = "X-Detection-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class Webhook(HttpDestination):
    name = "webhook"
    ENV_KEYS = {"url": "URL", "secret": "SECRET"}

    def __init__(self, settings=None, connection=None):
        super().__init__(settings, connection)
        self.require("url", "secret")
        path = urlsplit(self.settings["url"]).path.strip("/")
        if len(path) >= 16:  # a long path is typically a capability URL: mask it like a secret
            register_secret(path)

    @classmethod
    def from_connection(cls, conn):
        out = super().from_connection(conn)
        out["secret"] = out.pop("password", None) or conn.extra.get("secret")
        return out

    def deliver_once(self, alert: dict, ticket_ref: str | None) -> Delivery:
        delivery_id = f"{alert['id']}:{alert.get('revision', 1)}"
        payload = {
            "event": "alert.updated" if ticket_ref else "alert.created",
            "delivery_id": delivery_id,
            "alert": alert,
        }
        body = json.dumps(
            payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
        timestamp = str(int(time.time()))
        resp = self.request(
            "POST",
            self.settings["url"],
            data=body,
            headers={
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: sign(self.settings["secret"], timestamp, body),
                "Idempotency-Key": delivery_id,
                "X-Detection-Event": payload["event"],
            },
        )
        ref = None
        try:
            answer = resp.json()
            if isinstance(answer, dict):
                ref = next((str(answer[k]) for k in ("id", "key", "ticket") if answer.get(k)), None)
        except ValueError:
            pass
        return Delivery(ref or ticket_ref or alert["id"], "updated" if ticket_ref else "created")
