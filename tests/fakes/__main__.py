"""Serve the fake Jira, ServiceNow and webhook on 127.0.0.1 for a bounded time (manual checks).

  python -m tests.fakes [--jira-port 18081] [--servicenow-port 18082] [--webhook-port 18083]
                        [--seconds 900] [--state FILE]

Prints the settings to export; on exit (time up, SIGTERM or Ctrl-C) writes the tickets each
service holds to --state (JSON) and stdout.
"""

import argparse
import json
import signal
import sys
import time

from . import FakeJira, FakeServiceNow, FakeWebhook


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fakes")
    p.add_argument("--jira-port", type=int, default=18081)
    p.add_argument("--servicenow-port", type=int, default=18082)
    p.add_argument("--webhook-port", type=int, default=18083)
    p.add_argument("--seconds", type=float, default=900)
    p.add_argument("--state", default=None)
    args = p.parse_args()
    jira = FakeJira(args.jira_port).start()
    snow = FakeServiceNow(args.servicenow_port).start()
    hook = FakeWebhook(args.webhook_port).start()
    print(
        "\n".join(
            [
                f"export DETECTION_JIRA_URL={jira.url} DETECTION_JIRA_USER={jira.user} "
                f"DETECTION_JIRA_TOKEN={jira.password} DETECTION_JIRA_PROJECT={jira.project}",
                f"export DETECTION_SERVICENOW_URL={snow.url} DETECTION_SERVICENOW_USER={snow.user} "
                f"DETECTION_SERVICENOW_PASSWORD={snow.password}",
                f"export DETECTION_WEBHOOK_URL={hook.url}{hook.path} "
                f"DETECTION_WEBHOOK_SECRET={hook.secret}",
            ]
        ),
        flush=True,
    )
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *a: stop.update(now=True))
    deadline = time.monotonic() + args.seconds
    try:
        while not stop["now"] and time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    state = {
        "jira": sorted(
            (
                {"key": i["key"], "labels": i["labels"], "comments": len(i["comments"])}
                for i in jira.issues.values()
            ),
            key=lambda i: i["key"],
        ),
        "servicenow": sorted(
            (
                {
                    "number": i["number"],
                    "correlation_id": i["correlation_id"],
                    "work_notes": len(i["work_notes_history"]),
                }
                for i in snow.incidents.values()
            ),
            key=lambda i: i["number"],
        ),
        "webhook": {
            "deliveries": [d["delivery_id"] for d in hook.deliveries],
            "tickets": hook.tickets,
        },
        "requests": {
            "jira": len(jira.requests),
            "servicenow": len(snow.requests),
            "webhook": len(hook.requests),
        },
    }
    for fake in (jira, snow, hook):
        fake.stop()
    text = json.dumps(state, indent=2)
    if args.state:
        with open(args.state, "w") as fh:
            fh.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
