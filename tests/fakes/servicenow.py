"""The ServiceNow Table API subset the `servicenow` destination uses: query by correlation_id,
create, PATCH."""

from __future__ import annotations

import itertools
import re
import uuid

from .http import FakeService, Request


class FakeServiceNow(FakeService):
    name = "fake-servicenow"

    def __init__(self, port=0, user="svc-detections", password="snow-pass-8e21d0"):
        super().__init__(port, user, password)
        self.incidents: dict[str, dict] = {}
        self._numbers = itertools.count(10001)

    def by_correlation(self, correlation_id: str) -> list[dict]:
        with self.lock:
            return [i for i in self.incidents.values() if i["correlation_id"] == correlation_id]

    def handle(self, req: Request):
        m = re.fullmatch(r"/api/now/table/(\w+)(?:/(\w+))?", req.path)
        if not m or m.group(1) != "incident":
            return 404, {"error": {"message": "No such table"}}, {}
        sys_id = m.group(2)
        with self.lock:
            if req.method == "GET" and sys_id is None:
                query = req.query.get("sysparm_query", "")
                cid = re.match(r"correlation_id=([^^]*)", query)
                rows = [
                    i
                    for i in self.incidents.values()
                    if not cid or i["correlation_id"] == cid.group(1)
                ]
                rows.sort(key=lambda i: i["sys_created_on"])
                rows = rows[: int(req.query.get("sysparm_limit", 10000))]
                fields = req.query.get("sysparm_fields")
                if fields:
                    rows = [{k: i.get(k) for k in fields.split(",")} for i in rows]
                return 200, {"result": rows}, {}
            if req.method == "POST" and sys_id is None:
                record = req.json
                if not record.get("short_description"):
                    return 400, {"error": {"message": "short_description required"}}, {}
                n = next(self._numbers)
                new = {
                    **record,
                    "sys_id": uuid.uuid4().hex,
                    "number": f"INC{n:07d}",
                    "sys_created_on": n,
                    "work_notes_history": [],
                }
                self.incidents[new["sys_id"]] = new
                return 201, {"result": new}, {}
            if req.method == "PATCH" and sys_id:
                incident = self.incidents.get(sys_id)
                if incident is None:
                    return 404, {"error": {"message": "No Record found"}}, {}
                patch = dict(req.json)
                if "work_notes" in patch:
                    incident["work_notes_history"].append(patch.pop("work_notes"))
                incident.update(patch)
                return 200, {"result": incident}, {}
        return 405, {"error": {"message": "method not allowed"}}, {}
