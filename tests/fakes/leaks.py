"""Secret leaks, provoked and looked for: fake servers that echo a credential back in their error
bodies (each way a real server or proxy does it), and a search of every output channel for any
form of the credential. tests/detection/test_secrets.py drives them; another channel (the UI
plugin's JSON) reuses them:

    from tests.fakes.leaks import LEAKS, provoke, leaks_in
    @pytest.mark.parametrize("leak", LEAKS.values(), ids=list(LEAKS))
    def test_plugin_json_masks(leak, store_url, monkeypatch, tmp_path):
        case = provoke(leak, store_url, monkeypatch)  # env set, alert stored, delivery failed
        ... read the plugin's JSON for case.alert_id ...
        assert leaks_in(text, case.secrets) == []
        case.close()
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import quote, quote_plus

from .fixtures import FAST_HTTP
from .http import FakeService, Request
from .jira import FakeJira
from .servicenow import FakeServiceNow
from .webhook import FakeWebhook


def unique(prefix: str) -> str:
    """A credential nobody registered before (the masking registry is process-wide)."""
    return f"{prefix}{uuid.uuid4().hex[:16]}"


def basic(user: str, password: str) -> str:
    """The base64 of `user:password` a Basic Authorization header carries."""
    try:
        raw = f"{user}:{password}".encode("latin-1")
    except UnicodeEncodeError:
        raw = f"{user}:{password}".encode("utf-8")
    return base64.b64encode(raw).decode("ascii")


def forms(secret: str) -> dict[str, str]:
    """The forms a leaked `secret` takes in the channels we search."""
    out = {
        "raw": secret,
        "url-quoted": quote(secret, safe=""),
        "url-quoted-plus": quote_plus(secret),
        "json-escaped": json.dumps(secret, ensure_ascii=False)[1:-1],
        "json-escaped-ascii": json.dumps(secret)[1:-1],
        "whitespace-collapsed": " ".join(secret.split()),
    }
    return {name: value for name, value in out.items() if value}


def leaks_in(text: str, secrets: dict[str, str], window: int = 8) -> list[str]:
    """Which secret leaked into `text`, in which form: any `window` characters in a row of any
    form of it (a secret cut in half is still a leak)."""
    found = []
    for name, secret in secrets.items():
        for form_name, form in forms(secret).items():
            size = min(window, len(form))
            if any(form[i : i + size] in text for i in range(len(form) - size + 1)):
                found.append(f"{name} ({form_name})")
                break
    return found


class EveryRecord(logging.Handler):
    """Captures every log record at DEBUG. Its level cannot be raised: the CLI sets the level of
    the root logger's handlers to WARNING, which would hide what urllib3 logs at DEBUG."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def setLevel(self, level):  # noqa: N802 - logging's API
        pass

    def emit(self, record):
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def __enter__(self):
        root = logging.getLogger()
        self._level = root.level
        root.setLevel(logging.DEBUG)
        root.addHandler(self)
        return self

    def __exit__(self, *exc):
        root = logging.getLogger()
        root.removeHandler(self)
        root.setLevel(self._level)


# --- the leaks ------------------------------------------------------------------------------------


@dataclass
class Leak:
    """A destination whose server echoes a credential in its error bodies.

    `fake(secret)` builds the server with that credential; `env(fake, secret)` the destination's
    environment beside `env_for`'s; `echo(req, secret)` the error body; `secrets(fake, secret)`
    what must not show anywhere."""

    destination: str
    fake: Callable[[str], FakeService]
    echo: Callable[[Request, str], str]
    secret: Callable[[], str] = field(default=lambda: unique("Zq7-"))
    env: Callable[[FakeService, str], dict] = field(default=lambda fake, secret: {})
    secrets: Callable[[FakeService, str], dict] = field(
        default=lambda fake, secret: {"credential": secret}
    )


def _jira(secret):
    return FakeJira(token=secret)


def _snow(secret):
    return FakeServiceNow(password=secret)


def _hook(secret):
    return FakeWebhook(secret=unique("hook-secret-"))


def _auth(req):
    return req.headers.get("authorization", "")


def _basic_secrets(fake, secret):
    return {"credential": secret, "basic header": basic(fake.user, secret)}


LEAKS: dict[str, Leak] = {
    # A gateway answering 401 with the Authorization header it got.
    "jira-basic-header-echoed": Leak(
        "jira",
        _jira,
        lambda req, s: json.dumps({"error": f"rejected Authorization: {_auth(req)}"}),
        secrets=_basic_secrets,
    ),
    "servicenow-basic-credentials-echoed-without-header-name": Leak(
        "servicenow",
        _snow,
        lambda req, s: json.dumps(
            {"error": {"detail": f"bad credentials {_auth(req).split()[-1]}"}}
        ),
        secrets=_basic_secrets,
    ),
    # A webhook URL with its token in the query string; the server echoes the request target.
    "webhook-token-in-query-string": Leak(
        "webhook",
        _hook,
        lambda req, s: f"<h1>502</h1>no route for POST {req.target}",
        env=lambda fake, s: {"DETECTION_WEBHOOK_URL": f"{fake.url}{fake.path}?token={s}"},
    ),
    # The secret starts near the 200th character: a body cut before masking keeps half of it.
    "servicenow-token-cut-by-truncation": Leak(
        "servicenow", _snow, lambda req, s: json.dumps({"error": "x" * 170 + f" password {s}"})
    ),
    # Whitespace in the password, collapsed by the error text (ours or the server's).
    "servicenow-password-whitespace-collapsed-by-server": Leak(
        "servicenow",
        _snow,
        lambda req, s: f"login failed for password {' '.join(s.split())}",
        secret=lambda: f"pa  ss\t{unique('w')}",
    ),
    "servicenow-password-with-whitespace-echoed": Leak(
        "servicenow",
        _snow,
        lambda req, s: f"login failed for password {s}",
        secret=lambda: f"pa  ss  {unique('w')}",
    ),
    # The password echoed JSON-escaped: \" and \\u00e9, and / as \/ (PHP, some Java encoders).
    "jira-token-json-escaped": Leak(
        "jira",
        _jira,
        lambda req, s: json.dumps({"error": f"token {s} invalid"}),
        secret=lambda: f'pa"ss\\{unique("é")}',
    ),
    "jira-token-json-escaped-slashes": Leak(
        "jira",
        _jira,
        lambda req, s: json.dumps({"error": f"token {s}"}).replace("/", "\\/"),
        secret=lambda: f"pa/ss/{unique('k')}",
    ),
    "servicenow-password-json-in-json": Leak(
        "servicenow",
        _snow,
        lambda req, s: json.dumps({"error": json.dumps({"password": s})}),
        secret=lambda: f'p"w/{unique("é")}',
    ),
    # The password URL-encoded, spaces as + (form encoding).
    "servicenow-password-form-encoded": Leak(
        "servicenow",
        _snow,
        lambda req, s: f"bad request: user=svc&password={quote_plus(s)}",
        secret=lambda: f"p w&{unique('x')}",
    ),
}


@dataclass
class Provoked:
    """A leak provoked: the fake is down and echoing, the alert stored and its delivery failed."""

    leak: Leak
    fake: FakeService
    alert_id: str
    secrets: dict[str, str]
    error: str  # the library's exception text and report

    def close(self):
        self.fake.stop()


def provoke(leak: Leak, store_url: str, monkeypatch, alert: dict | None = None) -> Provoked:
    """Start the leak's fake with a fresh credential, point the environment at it (destination,
    alert store `store_url`), store `alert` (default: one built from tests.factories), deliver it
    through the library: the delivery fails and the error is recorded."""
    from include.detection import destinations
    from include.detection.alerts import build_alerts
    from include.detection.correlation import correlate
    from include.detection.errors import DeliveryError
    from include.detection.store import AlertStore
    from tests.factories import RULE, activity, run_command, ueba, ueba_row

    secret = leak.secret()
    fake = leak.fake(secret).start()
    fake.down(status=500, body=lambda req: leak.echo(req, secret))
    env = {
        "DETECTION_ALERT_STORE": store_url,
        "DETECTION_DESTINATIONS": leak.destination,
        **{f"DETECTION_HTTP_{k.upper()}": str(v) for k, v in FAST_HTTP.items()},
    }
    if leak.destination == "jira":
        env.update(
            DETECTION_JIRA_URL=fake.url,
            DETECTION_JIRA_USER=fake.user,
            DETECTION_JIRA_TOKEN=fake.password,
            DETECTION_JIRA_PROJECT=fake.project,
        )
    elif leak.destination == "servicenow":
        env.update(
            DETECTION_SERVICENOW_URL=fake.url,
            DETECTION_SERVICENOW_USER=fake.user,
            DETECTION_SERVICENOW_PASSWORD=fake.password,
        )
    else:
        env.update(DETECTION_WEBHOOK_URL=fake.url + fake.path, DETECTION_WEBHOOK_SECRET=fake.secret)
    env.update(leak.env(fake, secret))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv(f"AIRFLOW_CONN_DETECTION_{leak.destination.upper()}", raising=False)
    if alert is None:
        (alert,) = build_alerts(
            correlate(activity(run_command()), ueba([ueba_row()])),
            RULE,
            "2026-10-30T00:00:00Z",
            "2026-11-01T00:00:00Z",
        )
    error = ""
    with AlertStore(store_url) as store:
        store.upsert([alert])
        try:
            destinations.deliver_pending(store, [leak.destination])
        except DeliveryError as exc:
            error = f"{exc}\n{json.dumps(getattr(exc, 'report', None))}"
    secrets = leak.secrets(fake, secret)
    if leak.destination == "webhook":
        secrets["webhook secret"] = fake.secret
    return Provoked(leak, fake, alert["id"], secrets, error)
