"""Issue #9, point 3: a credential never leaks, whatever a failing server echoes back.

Each case starts a fake server (tests/fakes) that answers every request with an error body
echoing the credential in one of the forms real servers and proxies use (the Basic header, the
request URL with its query string, JSON-escaped, URL-encoded, whitespace collapsed, past the
200th character), delivers an alert through the library, then through the CLI, and searches
every channel the library writes to for any 8 characters in a row of any form of the credential:
the exception, every log record at DEBUG, the store's last_error (SQLite and PostgreSQL), the
CLI's stderr and `alerts show` / `alerts` stdout. The UI plugin reuses tests/fakes/leaks.py.

At the end, point 4 (d): HTTP tuning settings outside their bounds are refused, naming the
variable."""

import json
import math

import pytest

from include.detection import cli
from include.detection.connections import MASK, redact, register_url, resolve_store
from include.detection.destinations import Jira, ServiceNow, Webhook
from include.detection.errors import UsageError
from include.detection.store import AlertStore
from tests.fakes.leaks import LEAKS, EveryRecord, leaks_in, provoke, unique


@pytest.mark.parametrize("leak", list(LEAKS.values()), ids=list(LEAKS))
def test_an_echoed_credential_reaches_no_output_channel(
    leak, store_url, monkeypatch, capsys, detection_home
):
    with EveryRecord() as logs:
        case = provoke(leak, store_url, monkeypatch)
        try:
            redeliver = cli.main(["alerts", "redeliver"])
            redeliver_out = capsys.readouterr()
            assert cli.main(["alerts", "show", case.alert_id]) == 0
            shown = capsys.readouterr()
            assert cli.main(["alerts"]) == 0
            listed = capsys.readouterr()
        finally:
            case.close()
    with AlertStore(store_url) as store:
        stored = json.dumps(store.alerts(), ensure_ascii=False) + json.dumps(
            store.delivery_log(), ensure_ascii=False
        )
    assert redeliver == 4, redeliver_out.err
    channels = {
        "exception": case.error,
        "logs": logs.text,
        "store": stored,
        "cli stderr": redeliver_out.err + shown.err + listed.err,
        "cli stdout": redeliver_out.out + shown.out + listed.out,
    }
    assert "HTTP 500" in case.error and "HTTP 500" in stored, "the failure was recorded"
    found = {where: leaks_in(text, case.secrets) for where, text in channels.items()}
    assert {where: hits for where, hits in found.items() if hits} == {}
    assert MASK in stored, "the echo was masked, not dropped"


def test_a_password_in_the_alert_store_url_never_shows_when_the_store_is_down(
    monkeypatch, capsys, detection_home
):
    secret = unique("pg-pass-")
    monkeypatch.setenv(
        "DETECTION_ALERT_STORE",
        f"postgresql://postgres@127.0.0.1:1/test?connect_timeout=2&password={secret}",
    )
    with EveryRecord() as logs:
        assert cli.main(["alerts"]) == 2
    err = capsys.readouterr().err
    assert "cannot connect" in err
    assert leaks_in(err + logs.text, {"store password": secret}) == []


def test_a_password_in_the_alert_store_url_is_registered_wherever_it_echoes(detection_home):
    secret = unique("pg-pass-")
    url = f"postgresql://postgres@127.0.0.1:5432/test?password={secret}&sslmode=prefer"
    assert resolve_store(url) == url
    echoed = f"server said: authentication failed for {secret!r} ({json.dumps(secret)})"
    assert leaks_in(redact(echoed), {"store password": secret}) == []


@pytest.mark.parametrize(
    "text, secret",
    [
        ("GET https://hooks.example/x?token=SECRET1x&a=1", "SECRET1x"),
        ("url=https://h/x?a=1&API_KEY=SECRET2x#frag", "SECRET2x"),
        ("https://h/x?sig=SECRET3x", "SECRET3x"),
        ("postgresql://u@h/db?password=SECRET4x", "SECRET4x"),
        ("postgresql://u:SECRET5x@h/db", "SECRET5x"),
        ("{'Authorization': 'Bearer SECRET6x.abc'}", "SECRET6x"),
        ("Authorization: Basic dXNlcjpTRUNSRVQ3eA==", "dXNlcjpTRUNSRVQ3eA"),
        ('{"access_token": "SECRET8x"}', "SECRET8x"),
        ("host=h password=SECRET9x dbname=d", "SECRET9x"),
    ],
    ids=[
        "query-token",
        "query-api-key-uppercase",
        "query-sig",
        "postgres-query-password",
        "url-userinfo",
        "bearer-header-in-a-dict",
        "basic-header",
        "json-access-token",
        "libpq-dsn-password",
    ],
)
def test_credentials_nobody_registered_are_masked_by_their_shape(text, secret):
    assert secret not in redact(text) and MASK in redact(text)


@pytest.mark.parametrize(
    "text",
    [
        "Basic authentication failed",
        "Bearer token invalid",
        "missing token, password (set X)",
        "https://h/x?page=2&keyword=abc",
        "sslkey=/etc/k.pem",
    ],
    ids=[
        "basic-prose",
        "bearer-prose",
        "missing-setting-message",
        "query-not-secret",
        "libpq-key-path",
    ],
)
def test_ordinary_text_is_not_masked(text):
    assert redact(text) == text


def test_register_url_registers_userinfo_and_secret_query_values():
    user_pw, token = unique("u-"), unique("t-")
    register_url(f"https://me:{user_pw}@hooks.example/x?Token={token}&page=2")
    assert redact(f"{user_pw} / {token}") == f"{MASK} / {MASK}"


# --- issue #9, point 4 (d): HTTP tuning out of range ---------------------------------------------

BAD_TUNING = [
    ("DETECTION_HTTP_TIMEOUT", "-1"),
    ("DETECTION_HTTP_TIMEOUT", "0"),
    ("DETECTION_HTTP_TIMEOUT", "301"),
    ("DETECTION_HTTP_TIMEOUT", "nan"),
    ("DETECTION_HTTP_ATTEMPTS", "0"),
    ("DETECTION_HTTP_ATTEMPTS", "1e9"),
    ("DETECTION_HTTP_ATTEMPTS", "2.5"),
    ("DETECTION_HTTP_ATTEMPTS", "21"),
    ("DETECTION_HTTP_BACKOFF", "-0.5"),
    ("DETECTION_HTTP_BACKOFF", "61"),
    ("DETECTION_HTTP_MAX_WAIT", "nan"),
    ("DETECTION_HTTP_MAX_WAIT", "inf"),
    ("DETECTION_HTTP_MAX_WAIT", "-1"),
    ("DETECTION_HTTP_MAX_WAIT", "3601"),
    ("DETECTION_JIRA_TIMEOUT", "-5"),
    ("DETECTION_HTTP_TIMEOUT", "soon"),
]


def _jira_env(monkeypatch):
    for key, value in {
        "DETECTION_JIRA_URL": "http://127.0.0.1:9",
        "DETECTION_JIRA_TOKEN": "t0ken-x",
        "DETECTION_JIRA_PROJECT": "SEC",
    }.items():
        monkeypatch.setenv(key, value)
    for var in ("TIMEOUT", "ATTEMPTS", "BACKOFF", "MAX_WAIT"):
        monkeypatch.delenv(f"DETECTION_HTTP_{var}", raising=False)
        monkeypatch.delenv(f"DETECTION_JIRA_{var}", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_DETECTION_JIRA", raising=False)


@pytest.mark.parametrize("var, value", BAD_TUNING, ids=[f"{v}={x}" for v, x in BAD_TUNING])
def test_http_tuning_out_of_range_is_refused_naming_the_variable(var, value, monkeypatch):
    _jira_env(monkeypatch)
    monkeypatch.setenv(var, value)
    with pytest.raises(UsageError, match=var):
        Jira()


@pytest.mark.parametrize(
    "key, value",
    [("timeout", -1), ("attempts", 0), ("backoff", math.inf), ("max_wait", math.nan)],
    ids=["timeout", "attempts", "backoff", "max_wait"],
)
def test_http_tuning_out_of_range_in_explicit_settings_is_refused(key, value):
    settings = {"url": "http://127.0.0.1:9", "user": "u", "password": "p4ssword", key: value}
    with pytest.raises(UsageError, match=f"servicenow setting {key}"):
        ServiceNow(settings=settings)


@pytest.mark.parametrize(
    "var, value, attribute, expected",
    [
        ("DETECTION_HTTP_TIMEOUT", "300", "timeout", 300.0),
        ("DETECTION_HTTP_ATTEMPTS", "1", "attempts", 1),
        ("DETECTION_HTTP_ATTEMPTS", "20", "attempts", 20),
        ("DETECTION_HTTP_BACKOFF", "0", "backoff", 0.0),
        ("DETECTION_HTTP_MAX_WAIT", "0", "max_wait", 0.0),
        ("DETECTION_HTTP_MAX_WAIT", "3600", "max_wait", 3600.0),
    ],
    ids=["timeout-300", "attempts-1", "attempts-20", "backoff-0", "max-wait-0", "max-wait-3600"],
)
def test_http_tuning_at_its_bounds_is_accepted(var, value, attribute, expected, monkeypatch):
    _jira_env(monkeypatch)
    monkeypatch.setenv(var, value)
    assert getattr(Jira(), attribute) == expected


def test_webhook_tuning_from_its_connection_names_the_connection(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_DETECTION_WEBHOOK",
        json.dumps(
            {
                "conn_type": "http",
                "host": "http://127.0.0.1:9/hook",
                "password": "s3cret-x",
                "extra": {"timeout": "-3"},
            }
        ),
    )
    with pytest.raises(UsageError, match="connection 'detection_webhook' timeout"):
        Webhook()
