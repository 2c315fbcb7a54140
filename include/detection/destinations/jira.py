"""`jira`: one Jira issue per alert, via the REST API (v2 bodies: plain-text description).

Settings: url, user (account e-mail; empty for a Data Center personal access token), token
(API token or PAT), project (key), issue_type (default Task), search_path (default
`/rest/api/2/search/jql`, Jira Cloud; `/rest/api/2/search` on Data Center), priorities (JSON
object severity -> priority name, optional). Env DETECTION_JIRA_<KEY>, or the connection
`detection_jira` (host = base URL, login = user, password = token, extra = the rest).

Text: the summary is one line (control and bidi characters shown as escapes, `text.printable`)
and formula-safe; the description is all data, so it goes into one `{noformat}` block, where Jira
renders nothing: no links, images, macros or emphasis. That is one rule to get right (break any
`{noformat` in the data, the only thing that ends the block) where backslash-escaping every wiki
special character means knowing all of them, including line-start ones (`h1.`, `bq.`, `*`, `#`,
`||`, `----`) and Jira's inconsistent escape rules. Jira Cloud converts the block to a code block.

Never a second issue for an alert: the issue carries the label `detection-alert-<alert id>`
(and the issue property `detection.alert`); a delivery without a known issue key searches for
that label first and updates what it finds. An update rewrites summary and description and adds
a comment naming the new revision.
"""

from __future__ import annotations

import json
import re

from ..text import formula_safe, printable
from .base import Delivery, HttpDestination, summary_lines

PROPERTY = "detection.alert"
MAX_TEXT = 30000
MAX_SUMMARY = 250
_NOFORMAT = re.compile(r"\{(?=\s*noformat)", re.IGNORECASE)


def summary(value) -> str:
    """A Jira summary: one line, no formula start, at most MAX_SUMMARY characters."""
    return formula_safe(printable(value))[:MAX_SUMMARY]


def description(lines: list[str]) -> str:
    """Lines of data as a Jira wiki description that renders them literally: one `{noformat}`
    block; a `{noformat` in the data, which would end it, gets a `(` for its brace."""
    body = _NOFORMAT.sub("(", "\n".join(printable(line) for line in lines))
    wrapper = "{noformat}\n%s\n{noformat}"
    return wrapper % body[: MAX_TEXT - len(wrapper)]


def label(alert: dict) -> str:
    return f"detection-alert-{alert['id']}"


class Jira(HttpDestination):
    name = "jira"
    ENV_KEYS = {
        "url": "URL",
        "user": "USER",
        "token": "TOKEN",
        "project": "PROJECT",
        "issue_type": "ISSUE_TYPE",
        "search_path": "SEARCH_PATH",
        "priorities": "PRIORITIES",
    }
    CALLS_PER_DELIVERY = 4

    def __init__(self, settings=None, connection=None):
        super().__init__(settings, connection)
        self.require("url", "token", "project")
        s = self.settings
        if s.get("user"):
            self.use_basic_auth(s["user"], s["token"])
        else:
            self.use_bearer(s["token"])
        self.session.headers["Content-Type"] = "application/json"
        self.search_path = s.get("search_path") or "/rest/api/2/search/jql"
        priorities = s.get("priorities") or {}
        self.priorities = json.loads(priorities) if isinstance(priorities, str) else priorities

    @classmethod
    def from_connection(cls, conn):
        out = super().from_connection(conn)
        out["token"] = out.pop("password", None)
        return out

    def _fields(self, alert: dict) -> dict:
        fields = {
            "summary": summary(alert["title"]),
            "description": description(summary_lines(alert)),
        }
        if alert["severity"] in self.priorities:
            fields["priority"] = {"name": self.priorities[alert["severity"]]}
        return fields

    def _search(self, alert: dict) -> str | None:
        jql = (
            f'project = "{self.settings["project"]}" AND labels = "{label(alert)}" '
            "ORDER BY created ASC"
        )
        resp = self.request(
            "GET", self.search_path, params={"jql": jql, "fields": "key", "maxResults": 1}
        )
        issues = resp.json().get("issues") or []
        return issues[0]["key"] if issues else None

    def _update(self, key: str, alert: dict) -> bool:
        """Rewrite the issue; False if it is gone (deleted in Jira)."""
        resp = self.request(
            "PUT",
            f"/rest/api/2/issue/{key}",
            allow=(404,),
            json={"fields": self._fields(alert), "update": {"labels": [{"add": label(alert)}]}},
        )
        if resp.status_code == 404:
            return False
        n = len(alert.get("evidence", []))
        self.request(
            "POST",
            f"/rest/api/2/issue/{key}/comment",
            json={
                "body": f"Alert updated to revision {alert.get('revision', 1)}: {n} evidence rows "
                f"(fingerprint {alert.get('fingerprint', '')[:16]})."
            },
        )
        return True

    def deliver_once(self, alert: dict, ticket_ref: str | None) -> Delivery:
        key = ticket_ref or self._search(alert)
        if key and self._update(key, alert):
            return Delivery(key, "updated")
        if key and ticket_ref:  # the known issue was deleted: look for another, else create
            found = self._search(alert)
            if found and found != key and self._update(found, alert):
                return Delivery(found, "updated")
        fields = {
            **self._fields(alert),
            "project": {"key": self.settings["project"]},
            "issuetype": {"name": self.settings.get("issue_type") or "Task"},
            "labels": ["detection", label(alert)],
        }
        key = self.request("POST", "/rest/api/2/issue", json={"fields": fields}).json()["key"]
        self.request(
            "PUT",
            f"/rest/api/2/issue/{key}/properties/{PROPERTY}",
            json={
                "id": alert["id"],
                "revision": alert.get("revision", 1),
                "rule_id": alert["rule_id"],
                "fingerprint": alert.get("fingerprint"),
            },
        )
        return Delivery(key, "created")
