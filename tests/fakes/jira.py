"""The Jira REST API subset the `jira` destination uses: create, JQL search by label, update,
comment, issue property."""

from __future__ import annotations

import itertools
import re

from .http import FakeService, Request


class FakeJira(FakeService):
    name = "fake-jira"

    def __init__(
        self, port=0, user="soc-bot@example.com", token="jira-token-5f3a9c", project="SEC"
    ):
        super().__init__(port, user, token)
        self.project = project
        self.issues: dict[str, dict] = {}
        self._ids = itertools.count(10001)

    def by_label(self, label: str) -> list[dict]:
        with self.lock:
            return [i for i in self.issues.values() if label in i["labels"]]

    def delete(self, key: str) -> None:
        with self.lock:
            del self.issues[key]

    def handle(self, req: Request):
        p = req.path
        with self.lock:
            if req.method == "POST" and p == "/rest/api/2/issue":
                fields = req.json["fields"]
                if fields.get("project", {}).get("key") != self.project or not fields.get(
                    "summary"
                ):
                    return 400, {"errors": {"project": "bad project or summary"}}, {}
                n = next(self._ids)
                key = f"{self.project}-{n - 10000}"
                self.issues[key] = {
                    "id": str(n),
                    "key": key,
                    "fields": fields,
                    "labels": list(fields.get("labels", [])),
                    "comments": [],
                    "properties": {},
                    "created": n,
                }
                return 201, {"id": str(n), "key": key, "self": f"/rest/api/2/issue/{n}"}, {}
            if req.method == "GET" and p in ("/rest/api/2/search/jql", "/rest/api/2/search"):
                jql = req.query.get("jql", "")
                wanted = re.search(r'labels\s*=\s*"([^"]+)"', jql)
                project = re.search(r'project\s*=\s*"?([A-Z0-9]+)"?', jql)
                found = sorted(
                    (
                        i
                        for i in self.issues.values()
                        if (not wanted or wanted.group(1) in i["labels"])
                        and (not project or i["key"].startswith(project.group(1) + "-"))
                    ),
                    key=lambda i: i["created"],
                )
                limit = int(req.query.get("maxResults", 50))
                return (
                    200,
                    {"issues": [{"id": i["id"], "key": i["key"]} for i in found[:limit]]},
                    {},
                )
            m = re.fullmatch(r"/rest/api/2/issue/([A-Z0-9]+-\d+)(/comment|/properties/[\w.]+)?", p)
            if not m:
                return 404, {"errorMessages": [f"no route {req.method} {p}"]}, {}
            issue = self.issues.get(m.group(1))
            if issue is None:
                return 404, {"errorMessages": ["Issue does not exist"]}, {}
            if req.method == "PUT" and m.group(2) is None:
                body = req.json
                issue["fields"].update(body.get("fields", {}))
                for op in body.get("update", {}).get("labels", []):
                    if "add" in op and op["add"] not in issue["labels"]:
                        issue["labels"].append(op["add"])
                return 204, b"", {}
            if req.method == "POST" and m.group(2) == "/comment":
                issue["comments"].append(req.json["body"])
                return 201, {"id": str(len(issue["comments"]))}, {}
            if req.method == "PUT" and (m.group(2) or "").startswith("/properties/"):
                issue["properties"][m.group(2).split("/")[-1]] = req.json
                return 200, b"", {}
            return 405, {"errorMessages": ["method not allowed"]}, {}
