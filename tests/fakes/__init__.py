"""Real HTTP servers on 127.0.0.1 (threads, http.server) speaking the subset of the Jira,
ServiceNow and webhook APIs the destinations use, with injectable faults (HTTP errors, 429 with
Retry-After, slow answers that time the client out). `python -m tests.fakes` serves all three."""

from .http import FakeService, Fault, Request  # noqa: F401
from .jira import FakeJira  # noqa: F401
from .servicenow import FakeServiceNow  # noqa: F401
from .webhook import FakeWebhook  # noqa: F401
