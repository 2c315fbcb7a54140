"""include/notifiers.py: a failed, skipped or late run reaches the on-call through the webhook
destination's receiver (signed, tests/fakes/webhook.py) and/or e-mail (the SMTP provider's
notifier, against a loopback SMTP fake), with the run id and the reason, and never a secret."""

from __future__ import annotations

import json
import socketserver
import threading
from email import message_from_bytes
from types import SimpleNamespace

import pytest

from include import notifiers

RUN_ID = "scheduled__2026-11-02T00:00:00+00:00"


class FakeSmtp(socketserver.ThreadingTCPServer):
    """Just enough SMTP for smtplib: no TLS, no auth; keeps each message's raw bytes."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _SmtpSession)
        self.messages: list[dict] = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]


class _SmtpSession(socketserver.StreamRequestHandler):
    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        envelope = {"from": None, "to": []}
        self.reply("220 fake-smtp")
        while line := self.rfile.readline():
            verb = line.decode(errors="replace").strip()
            upper = verb.upper()
            if upper.startswith(("EHLO", "HELO")):
                self.reply("250 fake-smtp")
            elif upper.startswith("MAIL FROM:"):
                envelope["from"] = verb[10:].strip(" <>")
                self.reply("250 OK")
            elif upper.startswith("RCPT TO:"):
                envelope["to"].append(verb[8:].strip(" <>"))
                self.reply("250 OK")
            elif upper == "DATA":
                self.reply("354 go ahead")
                data = b""
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data += chunk
                self.server.messages.append({**envelope, "raw": data})
                envelope = {"from": None, "to": []}
                self.reply("250 queued")
            elif upper == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("250 OK")


@pytest.fixture
def smtp(monkeypatch):
    server = FakeSmtp()
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT",
        json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": server.port,
                "extra": {
                    "disable_tls": True,
                    "disable_ssl": True,
                    "from_email": "detections@example.com",
                },
            }
        ),
    )
    monkeypatch.setenv("DETECTION_NOTIFY_EMAIL", "oncall@example.com, soc@example.com")
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def hook(monkeypatch, webhook):
    monkeypatch.setenv("DETECTION_WEBHOOK_URL", webhook.url + webhook.path)
    monkeypatch.setenv("DETECTION_WEBHOOK_SECRET", webhook.secret)
    monkeypatch.setenv("DETECTION_HTTP_ATTEMPTS", "2")
    monkeypatch.setenv("DETECTION_HTTP_BACKOFF", "0.01")
    return webhook


@pytest.fixture(autouse=True)
def no_channels(monkeypatch):
    for var in (
        "DETECTION_WEBHOOK_URL",
        "DETECTION_WEBHOOK_SECRET",
        "DETECTION_NOTIFY_EMAIL",
        "AIRFLOW_CONN_DETECTION_WEBHOOK",
    ):
        monkeypatch.delenv(var, raising=False)


def failed_task_context(error: Exception) -> dict:
    ti = SimpleNamespace(
        task_id="validate_behavior_analytics",
        try_number=1,
        dag_id="runcommand_ueba_breach",
        run_id=RUN_ID,
        log_url="http://127.0.0.1:8080/log",
    )
    run = SimpleNamespace(
        run_id=RUN_ID,
        run_type="scheduled",
        logical_date=None,
        data_interval_start="2026-11-01T00:00:00+00:00",
        data_interval_end="2026-11-02T00:00:00+00:00",
    )
    return {"ti": ti, "dag_run": run, "exception": error}


def deadline_context() -> dict:
    """What the scheduler hands a DeadlineAlert callback (airflow/models/deadline.py)."""
    return {
        "dag_run": {
            "dag_id": "runcommand_ueba_breach",
            "dag_run_id": RUN_ID,
            "run_type": "scheduled",
            "state": "running",
            "logical_date": "2026-11-01T00:00:00Z",
            "data_interval_start": "2026-11-01T00:00:00Z",
            "data_interval_end": "2026-11-02T00:00:00Z",
        },
        "deadline": {"id": "0199-dead", "deadline_time": "2026-11-02T06:00:00+00:00"},
    }


def test_a_failed_task_posts_a_signed_event_with_the_run_id_and_reason(hook):
    notifiers.DetectionNotifier("run.failed")(
        failed_task_context(
            RuntimeError("BehaviorAnalytics: not_empty failed (observed: 0 rows in the window)")
        )
    )
    (event,) = hook.events  # the fake verified the signature
    message = event["payload"]
    assert (message["event"], message["run"]["run_id"]) == ("run.failed", RUN_ID)
    assert message["reason"] == (
        "validate_behavior_analytics: RuntimeError: BehaviorAnalytics: "
        "not_empty failed (observed: 0 rows in the window)"
    )
    assert message["run"]["data_interval"] == [
        "2026-11-01T00:00:00+00:00",
        "2026-11-02T00:00:00+00:00",
    ]
    assert message["rule"]["id"] == "11bda520-a965-4654-9a45-d09f372f71aa"
    assert event["delivery_id"] == f"{RUN_ID}:validate_behavior_analytics:1:run.failed"


def test_a_missed_deadline_posts_the_run_and_its_deadline(hook):
    notifiers.deadline_missed(context=deadline_context())
    (event,) = hook.events
    message = event["payload"]
    assert message["event"] == "run.deadline_missed"
    assert message["run"]["run_id"] == RUN_ID
    assert (
        "has not finished by its deadline 2026-11-02T06:00:00+00:00 (state: running)"
        in message["reason"]
    )


def test_a_secret_in_the_reason_is_masked(hook, monkeypatch):
    from include.detection.connections import register_secret

    register_secret("tok-9f8e7d6c5b4a")
    notifiers.DetectionNotifier()(
        failed_task_context(
            RuntimeError("jira: POST https://jira.example/?token=tok-9f8e7d6c5b4a: HTTP 401")
        )
    )
    (event,) = hook.events
    assert "tok-9f8e7d6c5b4a" not in event["body"] and hook.secret not in event["body"]
    assert "***" in event["payload"]["reason"]


def test_email_goes_to_every_recipient_with_data_as_text(smtp):
    sent = notifiers.send(
        notifiers.task_message(
            failed_task_context(RuntimeError("caller {{ 7 * 7 }} <b>bob</b>@contoso.com")),
            "run.failed",
        )
    )
    assert sent == ["email"]
    (mail,) = smtp.messages
    assert mail["to"] == ["oncall@example.com", "soc@example.com"]
    msg = message_from_bytes(mail["raw"])
    assert msg["Subject"] == f"[detection] run.failed: runcommand_ueba_breach {RUN_ID}"
    html = (
        next(p for p in msg.walk() if p.get_content_type() == "text/html")
        .get_payload(decode=True)
        .decode()
    )
    assert "caller {{ 7 * 7 }} &lt;b&gt;bob&lt;/b&gt;@contoso.com" in html, "not a template"
    assert "49" not in html


def test_a_webhook_that_is_down_does_not_stop_the_email(hook, smtp, caplog):
    hook.down()
    sent = notifiers.send(notifiers.deadline_message(deadline_context()))
    assert sent == ["email"] and len(smtp.messages) == 1
    assert "notification by webhook failed" in caplog.text


def test_with_no_channel_the_message_is_logged_as_not_sent(caplog):
    assert notifiers.send(notifiers.deadline_message(deadline_context())) == []
    assert "no notification channel configured" in caplog.text and RUN_ID in caplog.text
