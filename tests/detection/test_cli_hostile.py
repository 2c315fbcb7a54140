"""Issue #9 point 8: every bad argument or environment value is exit 2 with a message, never a
traceback; and point 4 on the terminal: data never drives it (escape sequences, CR, bidi)."""

from __future__ import annotations

import json
import os
import unicodedata

import pytest

from include.detection import cli
from include.detection.alerts import build_alerts
from include.detection.correlation import correlate
from include.detection.store import open_store
from tests.detection.test_cli import ACTIVITY, END, UEBA, write_jsonl
from tests.factories import RULE, activity, run_command, ueba, ueba_row


@pytest.fixture
def source(tmp_path):
    return write_jsonl(tmp_path / "src", ACTIVITY, UEBA)


def _readonly_dir(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root ignores mode bits: a place nobody can write instead
        return "/proc/nowhere"
    return str(folder)


BAD_ARGS = {
    "end far future": (["--end", "9999-12-31"], "outside the supported range"),
    "end before 1970": (["--end", "1500-01-01"], "outside the supported range"),
    "end empty": (["--end", ""], "needs --end"),
    "end garbage": (["--end", "yesterday"], "is not a timestamp"),
    "period huge": (["--end", END, "--period", "100000000d"], "longer than 366 days"),
    "period overflow": (["--end", END, "--period", "1e400d"], "not a Kusto timespan"),
    "period zero": (["--end", END, "--period", "0h"], "must be positive"),
    "period word": (["--end", END, "--period", "two days"], "not a Kusto timespan"),
}


@pytest.mark.parametrize("args,message", BAD_ARGS.values(), ids=BAD_ARGS.keys())
def test_a_bad_argument_is_exit_2_with_a_message(source, tmp_path, capsys, args, message):
    code = cli.main(["detect", "--source", str(source), "--out", str(tmp_path / "r.jsonl"), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err, err


def _out_cases(tmp_path):
    (tmp_path / "dir.jsonl").mkdir()
    (tmp_path / "afile").write_text("x")
    return {
        "an existing folder": str(tmp_path / "dir.jsonl"),
        "a read-only place": _readonly_dir(tmp_path) + "/r.jsonl",
        "under a file": str(tmp_path / "afile" / "r.jsonl"),
    }


@pytest.mark.parametrize("case", ["an existing folder", "a read-only place", "under a file"])
def test_an_unwritable_out_is_exit_2_before_the_scan(source, tmp_path, capsys, case):
    out = _out_cases(tmp_path)[case]
    code = cli.main(["detect", "--source", str(source), "--end", END, "--out", out])
    err = capsys.readouterr().err
    assert code == 2 and "error: " in err and "Traceback" not in err, err
    if not out.startswith("/proc/"):  # root may write nearly anywhere: /proc fails only on write
        assert err.startswith("error: --out") and "window:" not in err, "refused before the scan"


BAD_ENV = {
    "claim lease nan": ("DETECTION_CLAIM_LEASE", "nan"),
    "home is a file": ("DETECTION_HOME", "{file}"),
    "unknown destination": ("DETECTION_DESTINATIONS", "file,carrier-pigeon"),
    "store not a url": ("DETECTION_ALERT_STORE", "no_such_connection"),
}


@pytest.mark.parametrize("var,value", BAD_ENV.values(), ids=BAD_ENV.keys())
def test_a_bad_environment_value_is_exit_2_for_run(
    source, tmp_path, capsys, monkeypatch, detection_home, var, value
):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv(var, value.format(file=tmp_path / "file"))
    code = cli.main(["run", "--source", str(source), "--end", END])
    err = capsys.readouterr().err
    assert code == 2 and "error: " in err, err


def test_redeliver_with_an_empty_id_is_a_usage_error_not_every_alert(detection_home, capsys):
    result = correlate(
        activity(run_command(Caller="a@contoso.com")),
        ueba([ueba_row(UserPrincipalName="a@contoso.com")]),
    )
    with open_store() as store:
        store.upsert(build_alerts(result, RULE, "2026-10-30T00:00:00Z", END))
    assert cli.main(["alerts", "redeliver", "", "--force"]) == 2
    assert "empty" in capsys.readouterr().err
    with open_store() as store:
        assert all(a["tickets"] == [] for a in store.alerts()), "nothing was sent"


HOSTILE = {
    "escape sequence": "\x1b]0;pwned\x07\x1b[2J",
    "carriage return": "legit@contoso.com\rforged line",
    "bidi override": "evil\u202emoc.osotnoc@",
    "c1 control": "a\x9bb",
    "line separator": "a\u2028b",
}


@pytest.mark.parametrize("payload", HOSTILE.values(), ids=HOSTILE.keys())
def test_alert_output_on_the_terminal_carries_no_control_characters(
    detection_home, capsys, payload
):
    caller = f"x{payload}@contoso.com"
    result = correlate(
        activity(run_command(Caller=caller)), ueba([ueba_row(UserPrincipalName=caller)])
    )
    (alert,) = build_alerts(result, RULE, "2026-10-30T00:00:00Z", END)
    with open_store() as store:
        store.upsert([alert])
    for args in (["alerts", "--format", "table"], ["alerts"], ["alerts", "show", alert["id"]]):
        assert cli.main(args) == 0
        out = capsys.readouterr().out
        unseen = [
            c for c in payload if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") and c in out
        ]
        assert not unseen, (args, unseen)
        if args != ["alerts", "--format", "table"]:  # JSON stays JSON, with the exact value
            first = json.loads(out if "show" in args else out.splitlines()[0])
            assert first["caller"] == caller
