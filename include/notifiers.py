"""The on-call hears of a detection that did not happen: Airflow callbacks that send a failed,
skipped or late run of a detection DAG to the webhook destination's receiver and/or by e-mail.

Channels (each used when configured; with none, the message is only logged as a warning):
- webhook: the `webhook` destination's settings (DETECTION_WEBHOOK_URL and _SECRET, or the Airflow
  connection `detection_webhook`), signed as its alerts are (`X-Detection-Signature-256`), with
  `X-Detection-Event: run.failed | run.skipped | run.deadline_missed` and an `Idempotency-Key`;
  a receiver tells them from alerts by `event`. Body:
  `{"event", "delivery_id", "reason", "run": {dag_id, run_id, run_type, logical_date,
  data_interval, task_id, try_number, log_url}, "rule": {id, name, severity}}`.
- e-mail: DETECTION_NOTIFY_EMAIL (comma-separated recipients) through the SMTP provider's
  notifier and its connection (DETECTION_NOTIFY_SMTP_CONN_ID, default `smtp_default`; the sender
  is the connection's `from_email`, or DETECTION_NOTIFY_EMAIL_FROM).

The reason is the task's exception text, already masked by the detection code, and masked again
here (`connections.redact`): no secret leaves in a notification. Airflow logs a callback that
raises; a channel that fails does not stop the other.
"""

from __future__ import annotations

import html
import json
import logging
import os
import time

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)
REASON_LIMIT = 2000
# Airflow hands a skip's reason to no callback: the task leaves it in this XCom (see the DAG).
SKIP_REASON_KEY = "skip_reason"


def _iso(value) -> str | None:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _get(obj, key: str):
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def _rule() -> dict:
    from include.detection.rule import load_rule

    rule = load_rule()
    return {"id": rule.id, "name": rule.name, "severity": rule.severity}


def _redacted(text: str) -> str:
    from include.detection.connections import redact

    text = redact(str(text))
    return text if len(text) <= REASON_LIMIT else text[:REASON_LIMIT] + " ..."


def task_message(context: dict, event: str) -> dict:
    """A notification from a task callback's context (on_failure / on_skipped)."""
    ti, run = context.get("ti"), context.get("dag_run")
    error = context.get("exception")
    task_id, try_number = _get(ti, "task_id"), _get(ti, "try_number")
    if error is not None:
        reason = f"{type(error).__name__}: {error}"
    else:
        reason = _skip_reason(ti) or "no reason recorded"
    run_id = _get(run, "run_id") or _get(ti, "run_id")
    return {
        "event": event,
        "delivery_id": f"{run_id}:{task_id}:{try_number}:{event}",
        "reason": _redacted(f"{task_id}: {reason}"),
        "run": {
            "dag_id": _get(ti, "dag_id") or _get(run, "dag_id"),
            "run_id": run_id,
            "run_type": str(_get(run, "run_type") or "") or None,
            "logical_date": _iso(_get(run, "logical_date")),
            "data_interval": [
                _iso(_get(run, "data_interval_start")),
                _iso(_get(run, "data_interval_end")),
            ],
            "task_id": task_id,
            "try_number": try_number,
            "log_url": _get(ti, "log_url"),
        },
        "rule": _rule(),
    }


def _skip_reason(ti) -> str | None:
    try:
        return ti.xcom_pull(task_ids=ti.task_id, key=SKIP_REASON_KEY)
    except Exception:  # noqa: BLE001 - a notice without its reason beats no notice
        log.exception("could not read the skip reason")
        return None


def deadline_message(context: dict) -> dict:
    """A notification from a DeadlineAlert callback's context: the core passes the run as the
    API's DAGRunResponse (JSON) and the deadline."""
    run, deadline = context.get("dag_run") or {}, context.get("deadline") or {}
    run_id = run.get("dag_run_id") or run.get("run_id")
    when = _iso(deadline.get("deadline_time"))
    return {
        "event": "run.deadline_missed",
        "delivery_id": f"{run_id}:deadline:{deadline.get('id')}",
        "reason": _redacted(
            f"the run has not finished by its deadline {when} (state: "
            f"{run.get('state')}): the interval it examines is not examined yet"
        ),
        "run": {
            "dag_id": run.get("dag_id"),
            "run_id": run_id,
            "run_type": run.get("run_type"),
            "logical_date": run.get("logical_date"),
            "data_interval": [run.get("data_interval_start"), run.get("data_interval_end")],
            "task_id": None,
            "try_number": None,
            "log_url": None,
        },
        "rule": _rule(),
    }


def _text(message: dict) -> str:
    run = message["run"]
    interval = " to ".join(str(x) for x in run["data_interval"])
    return (
        f"{message['rule']['name']} ({run['dag_id']}): {message['event']} for the interval "
        f"{interval}, run {run['run_id']}\n{message['reason']}"
    )


def _webhook():
    """The webhook destination's settings as a run-event sender, or None without a URL."""
    from include.airflow_connections import airflow_connection
    from include.detection.destinations.webhook import Webhook

    conn = airflow_connection(Webhook.conn_id())
    if not Webhook.resolve(None, conn).get("url"):
        return None
    return _run_events_class()(connection=conn)


def _run_events_class():
    """Built on first use: the destinations import requests, which parsing must not."""
    from include.detection.destinations.webhook import (
        SIGNATURE_HEADER,
        TIMESTAMP_HEADER,
        Delivery,
        Webhook,
        sign,
    )

    class RunEvents(Webhook):
        """The webhook destination's settings, retries and signature, for run events."""

        def deliver_once(self, message: dict, ticket_ref: str | None) -> Delivery:
            body = json.dumps(
                message, sort_keys=True, separators=(",", ":"), ensure_ascii=False
            ).encode()
            timestamp = str(int(time.time()))
            self.request(
                "POST",
                self.settings["url"],
                data=body,
                headers={
                    "Content-Type": "application/json",
                    TIMESTAMP_HEADER: timestamp,
                    SIGNATURE_HEADER: sign(self.settings["secret"], timestamp, body),
                    "Idempotency-Key": message["delivery_id"],
                    "X-Detection-Event": message["event"],
                },
            )
            return Delivery(message["delivery_id"], "created")

    return RunEvents


def _email(recipients: list[str], message: dict, text: str) -> None:
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    run = message["run"]
    subject = f"[detection] {message['event']}: {run['dag_id']} {run['run_id']}"
    body = "<pre>" + html.escape(text + "\n\n" + json.dumps(message, indent=2)) + "</pre>"
    notifier = SmtpNotifier(
        to=recipients,
        subject=subject,
        html_content=body,
        from_email=os.environ.get("DETECTION_NOTIFY_EMAIL_FROM") or None,
        smtp_conn_id=os.environ.get("DETECTION_NOTIFY_SMTP_CONN_ID") or "smtp_default",
    )
    # notify() directly, not the notifier's __call__: that would render the fields as Jinja
    # templates, and a value from the data (a caller's name) must stay text.
    notifier.notify({})


def send(message: dict) -> list[str]:
    """Send to every configured channel; returns the channels that took it."""
    sent, text = [], _text(message)
    try:
        hook = _webhook()
        if hook is not None:
            hook.deliver(message, None)
            sent.append("webhook")
    except Exception as exc:  # noqa: BLE001 - one channel failing must not stop the other
        log.error("notification by webhook failed: %s", _redacted(exc))
    recipients = [
        r.strip() for r in os.environ.get("DETECTION_NOTIFY_EMAIL", "").split(",") if r.strip()
    ]
    if recipients:
        try:
            _email(recipients, message, text)
            sent.append("email")
        except Exception as exc:  # noqa: BLE001
            log.error("notification by e-mail failed: %s", _redacted(exc))
    if sent:
        log.info("notified (%s): %s", ", ".join(sent), text)
    else:
        log.warning(
            "no notification channel configured (DETECTION_WEBHOOK_URL, "
            "DETECTION_NOTIFY_EMAIL); not sent: %s",
            text,
        )
    return sent


class DetectionNotifier(BaseNotifier):
    """A task callback: `on_failure_callback=DetectionNotifier("run.failed")`."""

    def __init__(self, event: str = "run.failed"):
        super().__init__()
        self.event = event

    def notify(self, context) -> None:
        send(task_message(context, self.event))


def deadline_missed(context: dict | None = None, **kwargs) -> None:
    """The DeadlineAlert callback (a SyncCallback the executor runs by import path)."""
    send(deadline_message(context or {}))
