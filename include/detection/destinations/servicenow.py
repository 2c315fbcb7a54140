"""`servicenow`: one incident per alert via the Table API, `correlation_id` = the alert id.

Settings: url (instance, e.g. https://acme.service-now.com), user + password (basic auth) or
token (bearer), table (default incident), assignment_group, caller_id, category (optional).
Env DETECTION_SERVICENOW_<KEY>, or the connection `detection_servicenow`.

Text: short_description is one line (control and bidi characters shown as escapes,
`text.printable`) and formula-safe; description and work notes keep their lines but no raw
control characters, and any `[code]` / `[/code]` tag in them gets parentheses for brackets:
ServiceNow renders what is between those tags as HTML in journal fields.

Every delivery first queries the table for `correlation_id=<alert id>` (Table API reads are
consistent), then PATCHes the incident it finds (description and a work note) or creates one.
"""

from __future__ import annotations

import re

from ..text import formula_safe, printable
from .base import Delivery, HttpDestination, summary_lines

MAX_SHORT = 160
_CODE_TAG = re.compile(r"\[(\s*/?\s*code\s*)\]", re.IGNORECASE)


def short_text(value) -> str:
    """A single-line field (short_description): no control characters, no formula start."""
    return formula_safe(printable(value))[:MAX_SHORT]


def journal(lines: list[str]) -> str:
    """Multi-line text (description, work_notes) that ServiceNow shows as text: no raw control
    characters, no `[code]` tags, and not starting with a formula character."""
    text = "\n".join(printable(line) for line in lines)
    return formula_safe(_CODE_TAG.sub(r"(\1)", text))


# Sentinel severity -> (impact, urgency): 1 high .. 3 low
IMPACT_URGENCY = {
    "High": ("1", "1"),
    "Medium": ("2", "2"),
    "Low": ("3", "3"),
    "Informational": ("3", "3"),
}


class ServiceNow(HttpDestination):
    name = "servicenow"
    ENV_KEYS = {
        "url": "URL",
        "user": "USER",
        "password": "PASSWORD",
        "token": "TOKEN",
        "table": "TABLE",
        "assignment_group": "ASSIGNMENT_GROUP",
        "caller_id": "CALLER_ID",
        "category": "CATEGORY",
    }
    CALLS_PER_DELIVERY = 2

    def __init__(self, settings=None, connection=None):
        super().__init__(settings, connection)
        s = self.settings
        self.require("url")
        if s.get("user") and s.get("password"):
            self.use_basic_auth(s["user"], s["password"])
        elif s.get("token"):
            self.use_bearer(s["token"])
        else:
            self.require("user", "password")
        self.session.headers["Content-Type"] = "application/json"
        self.table = s.get("table") or "incident"

    def _record(self, alert: dict) -> dict:
        impact, urgency = IMPACT_URGENCY.get(alert["severity"], ("2", "2"))
        record = {
            "short_description": short_text(alert["title"]),
            "description": journal(summary_lines(alert)),
            "impact": impact,
            "urgency": urgency,
        }
        for key in ("assignment_group", "caller_id", "category"):
            if self.settings.get(key):
                record[key] = self.settings[key]
        return record

    def _find(self, alert: dict) -> dict | None:
        resp = self.request(
            "GET",
            f"/api/now/table/{self.table}",
            params={
                "sysparm_query": f"correlation_id={alert['id']}^ORDERBYsys_created_on",
                "sysparm_fields": "sys_id,number",
                "sysparm_limit": "1",
            },
        )
        found = resp.json().get("result") or []
        return found[0] if found else None

    def deliver_once(self, alert: dict, ticket_ref: str | None) -> Delivery:
        found = self._find(alert)
        if found:
            n = len(alert.get("evidence", []))
            self.request(
                "PATCH",
                f"/api/now/table/{self.table}/{found['sys_id']}",
                json={
                    **self._record(alert),
                    "work_notes": journal(
                        [
                            f"Alert updated to revision {alert.get('revision', 1)}: "
                            f"{n} evidence rows."
                        ]
                    ),
                },
            )
            return Delivery(found["number"], "updated")
        created = self.request(
            "POST",
            f"/api/now/table/{self.table}",
            json={
                **self._record(alert),
                "correlation_id": alert["id"],
                "correlation_display": "detection-engineering",
            },
        ).json()["result"]
        return Delivery(created["number"], "created")
