"""A webhook receiver that verifies the HMAC-SHA256 signature and answers with a ticket id per
alert; repeats of a delivery id are counted, not ticketed again."""

from __future__ import annotations

import hashlib
import hmac
import itertools

from .http import FakeService, Request


class FakeWebhook(FakeService):
    name = "fake-webhook"

    def __init__(self, port=0, secret="hook-secret-2b7c9d", path="/hooks/detections"):
        super().__init__(port)
        self.secret, self.path = secret, path
        self.deliveries: list[dict] = []  # verified, in order
        self.tickets: dict[str, str] = {}  # alert id -> ticket id
        self.events: list[dict] = []  # verified run events (include/notifiers.py)
        self._n = itertools.count(1)

    def verify(self, req: Request) -> bool:
        timestamp = req.headers.get("x-detection-timestamp", "")
        expected = (
            "sha256="
            + hmac.new(
                self.secret.encode(), timestamp.encode() + b"." + req.body, hashlib.sha256
            ).hexdigest()
        )
        return hmac.compare_digest(req.headers.get("x-detection-signature-256", ""), expected)

    def handle(self, req: Request):
        if req.method != "POST" or req.path != self.path:
            return 404, {"error": "not found"}, {}
        if not self.verify(req):
            return 401, {"error": "bad signature"}, {}
        payload = req.json
        if "alert" not in payload:  # a run event (failed / skipped / late run), not an alert
            with self.lock:
                self.events.append(
                    {
                        "delivery_id": req.headers.get("idempotency-key"),
                        "event": payload.get("event"),
                        "body": req.body.decode(),
                        "payload": payload,
                    }
                )
            return 200, {"ok": True}, {}
        with self.lock:
            alert_id = payload["alert"]["id"]
            self.deliveries.append(
                {
                    "delivery_id": req.headers.get("idempotency-key"),
                    "event": payload["event"],
                    "alert": payload["alert"],
                }
            )
            ticket = self.tickets.setdefault(alert_id, f"WH-{next(self._n)}")
        return 200, {"ticket": ticket}, {}
