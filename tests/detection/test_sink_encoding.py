"""Issue #9, point 4: hostile data in an alert cannot inject markup, break lines or plant a
spreadsheet formula in the tickets it becomes.

The values go through the real pipeline (a Run Command by a caller named after the attack, a
UEBA location named after it too), so they land where data lands: in the title, at the start of
the description, in the entities, custom details and evidence. The tickets are read back from
the fake Jira / ServiceNow servers as they received them."""

import re

import pytest

from include.detection.alerts import build_alerts
from include.detection.correlation import correlate
from include.detection.destinations import Jira, ServiceNow
from tests.factories import RULE, activity, run_command, ueba, ueba_row
from tests.fakes.fixtures import FAST_HTTP

HOSTILE = {
    "crlf-line-injection": "bob\r\nSeverity: Low",
    "lf-wiki-heading": "bob\nh1. Fake heading",
    "jira-link": "[link|http://evil.example]",
    "jira-html-macro": "{html}<script>alert(1)</script>{html}",
    "jira-image": "!http://evil.example/x.png!",
    "jira-bold": "*bold* _italic_",
    "jira-noformat-breakout": "{noformat}[link|http://evil.example]{noformat}",
    "jira-noformat-with-params": "{NoFormat:title=x}[x|http://evil.example]",
    "servicenow-code-tag": "[code]<img src=x onerror=alert(1)>[/code]",
    "servicenow-code-tag-spaced": "[ CODE ]<b>bold</b>[/ code ]",
    "bidi-override": "admin\u202etxt.exe",
    "bidi-embeddings-and-isolates": "\u2066evil\u2069 \u202a\u202b\u202c\u202d",
    "zero-width-and-bom": "ad\u200bmin\ufeff",
    "formula-hyperlink": '=HYPERLINK("http://evil.example","x")',
    "formula-plus": "+1+cmd|' /C calc'!A0",
    "formula-minus": "-2+3",
    "formula-at": "@SUM(1+1)",
    "formula-tab": "\t=1+1",
    "formula-cr": "\r=1+1",
    "nul-escape-del-c1": "a\x00b\x1b[31mc\x7fd\x85e\x9b",
}
FORMULAS = {k: v for k, v in HOSTILE.items() if k.startswith("formula-")}

# Characters no ticket field may carry raw: C0 but LF, DEL, C1, bidi and invisible format chars.
UNSEEN = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2028\u2029"
    "\u2060-\u2064\u2066-\u2069\ufeff]"
)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CODE_TAG = re.compile(r"\[\s*/?\s*code\s*\]", re.IGNORECASE)
NOFORMAT = re.compile(r"\{\s*noformat", re.IGNORECASE)


def hostile_alert(value: str) -> dict:
    (alert,) = build_alerts(
        correlate(
            activity(run_command(Caller=value)),
            ueba([ueba_row(UserPrincipalName=value, SourceIPLocation=value)]),
        ),
        RULE,
        "2026-10-30T00:00:00Z",
        "2026-11-01T00:00:00Z",
    )
    assert alert["description"].startswith(value), "the value starts the description"
    return alert


def words(value: str) -> list[str]:
    """The readable words of a value: they must still be in the ticket (shown, not dropped)."""
    return re.findall(r"[A-Za-z]{3,}", value)


def jira_issue(jira, alert) -> dict:
    settings = {
        "url": jira.url,
        "user": jira.user,
        "token": jira.password,
        "project": jira.project,
        **FAST_HTTP,
    }
    key = Jira(settings=settings).deliver(alert, None).ticket_ref
    return jira.issues[key]["fields"]


def servicenow_incident(servicenow, alert) -> dict:
    settings = {
        "url": servicenow.url,
        "user": servicenow.user,
        "password": servicenow.password,
        **FAST_HTTP,
    }
    ServiceNow(settings=settings).deliver(alert, None)
    (incident,) = servicenow.by_correlation(alert["id"])
    return incident


def assert_single_line(field: str, value: str) -> None:
    assert "\n" not in value and not UNSEEN.search(value), f"{field}: {value!r}"
    assert not value.startswith(FORMULA_START), f"{field} starts with a formula: {value!r}"


def assert_lines_safe(field: str, text: str) -> None:
    """No raw control or format character; no line starts with a formula (our own "- " list
    items aside): a data value never starts a line unquoted."""
    assert not UNSEEN.search(text), f"{field}: raw control or format character"
    for line in text.split("\n"):
        assert not line.startswith(("=", "+", "@", "\t", "\r")), f"{field}: {line!r}"
        assert not (line.startswith("-") and not line.startswith("- ")), f"{field}: {line!r}"


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
def test_jira_issue_shows_hostile_data_as_inert_text(value, jira):
    fields = jira_issue(jira, hostile_alert(value))
    assert_single_line("summary", fields["summary"])
    text = fields["description"]
    # everything is data inside one {noformat} block the data cannot close
    assert text.startswith("{noformat}\n") and text.endswith("\n{noformat}")
    assert len(NOFORMAT.findall(text)) == 2, text
    assert_lines_safe("description", text)
    assert all(w in text for w in words(value)), "the value is shown, not dropped"
    assert "Evidence (1 rows)" in text


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
def test_servicenow_incident_shows_hostile_data_as_inert_text(value, servicenow):
    incident = servicenow_incident(servicenow, hostile_alert(value))
    assert_single_line("short_description", incident["short_description"])
    text = incident["description"]
    assert not CODE_TAG.search(text), "a [code] tag renders HTML in journal fields"
    assert not text.startswith(FORMULA_START)
    assert_lines_safe("description", text)
    assert all(w in text for w in words(value)), "the value is shown, not dropped"
    assert "Evidence (1 rows)" in text


@pytest.mark.parametrize("value", list(FORMULAS.values()), ids=list(FORMULAS))
def test_a_title_starting_with_a_formula_is_quoted_in_jira_and_servicenow(value, jira, servicenow):
    """A display-name format may start with a value ("{{Caller}} ran ..."): the summary fields,
    which spreadsheet exports put first, are quoted with a leading apostrophe."""
    alert = {**hostile_alert("bob@contoso.com"), "title": value + " ran a Run Command"}
    summary = jira_issue(jira, alert)["summary"]
    short = servicenow_incident(servicenow, alert)["short_description"]
    expected = "\\x" if value[0] in "\t\r" else "'"  # a TAB / CR is shown as an escape
    for field, shown in (("summary", summary), ("short_description", short)):
        assert shown.startswith(expected), f"{field}: {shown!r}"
        assert_single_line(field, shown)


def test_servicenow_work_note_of_an_update_has_no_code_tag_or_control_character(servicenow):
    settings = {
        "url": servicenow.url,
        "user": servicenow.user,
        "password": servicenow.password,
        **FAST_HTTP,
    }
    alert = hostile_alert(HOSTILE["servicenow-code-tag"])
    ServiceNow(settings=settings).deliver(alert, None)
    ServiceNow(settings=settings).deliver({**alert, "revision": 2}, "INC")
    (incident,) = servicenow.by_correlation(alert["id"])
    (note,) = incident["work_notes_history"]
    assert note == "Alert updated to revision 2: 1 evidence rows."
    assert not CODE_TAG.search(incident["description"])


# --- the shared helpers (include/detection/text.py) ----------------------------------------------

PRINTABLE = [
    ("a\r\nb", "a\\x0d\\x0ab"),
    ("tab\there", "tab\\x09here"),
    ("nul\x00", "nul\\x00"),
    ("esc\x1b[2J", "esc\\x1b[2J"),
    ("del\x7f", "del\\x7f"),
    ("c1\x85\x9b", "c1\\x85\\x9b"),
    ("rlo\u202eexe", "rlo\\u202eexe"),
    ("iso\u2066x\u2069", "iso\\u2066x\\u2069"),
    ("zw\u200bj\u200dbom\ufeff", "zw\\u200bj\\u200dbom\\ufeff"),
    ("ls\u2028ps\u2029", "ls\\u2028ps\\u2029"),
    ("lone\ud800", "lone\\ud800"),
    ("été 東京 ✓", "été 東京 ✓"),
    ("plain", "plain"),
]


@pytest.mark.parametrize(
    "value, shown",
    PRINTABLE,
    ids=[
        "crlf",
        "tab",
        "nul",
        "escape-sequence",
        "del",
        "c1",
        "bidi-override",
        "bidi-isolates",
        "zero-width-and-bom",
        "line-paragraph-separators",
        "lone-surrogate",
        "ordinary-unicode-kept",
        "ascii-kept",
    ],
)
def test_printable_shows_control_and_invisible_characters_as_escapes(value, shown):
    from include.detection.text import printable

    assert printable(value) == shown


@pytest.mark.parametrize(
    "value, safe",
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("a=1", "a=1"),
        ("", ""),
        ("'=1", "'=1"),
    ],
    ids=[
        "equals",
        "plus",
        "minus",
        "at",
        "tab",
        "cr",
        "formula-char-inside",
        "empty",
        "already-quoted",
    ],
)
def test_formula_safe_quotes_a_leading_formula_character(value, safe):
    from include.detection.text import formula_safe

    assert formula_safe(value) == safe
