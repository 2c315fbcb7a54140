"""The CLI contract: `python -m include.detection detect|alerts ...` on JSONL, Parquet and CSV."""

import json
import subprocess
import sys

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from include.detection import cli, results
from include.detection.correlation import OUTPUT_COLUMNS
from tests.conftest import REPO
from tests.factories import RULE, run_command, ueba_row

END = "2026-11-01T00:00:00Z"


def write_jsonl(folder, activity, ueba, extra_lines=()):
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("AzureActivity", activity), ("BehaviorAnalytics", ueba)):
        with open(folder / f"{name}.jsonl", "w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
            if name == "AzureActivity":
                fh.writelines(extra_lines)
    return folder


def write_lake(folder, activity, ueba):
    """Hive-partitioned Parquet, TimeGenerated as timestamp[ns, UTC], dynamic columns as text."""
    for name, rows in (("AzureActivity", activity), ("BehaviorAnalytics", ueba)):
        frame = pd.DataFrame(rows)
        frame["TimeGenerated"] = pd.to_datetime(frame["TimeGenerated"], utc=True, format="ISO8601")
        frame["date"] = frame["TimeGenerated"].dt.strftime("%Y-%m-%d")
        for day, part in frame.groupby("date"):
            out = folder / name / f"date={day}"
            out.mkdir(parents=True, exist_ok=True)
            table = pa.Table.from_pandas(part.drop(columns="date"), preserve_index=False)
            table = table.set_column(
                table.schema.get_field_index("TimeGenerated"),
                "TimeGenerated",
                table["TimeGenerated"].cast(pa.timestamp("ns", tz="UTC")),
            )
            pq.write_table(table, out / "part-0.parquet")
    return folder


ACTIVITY = (
    run_command("tp", start="2026-10-31T10:00:00.1234567Z")
    + run_command("failed", statuses=("Started", "Accepted", "Failed"))
    + run_command("old", start="2026-10-29T23:59:59Z")
)
UEBA = [
    ueba_row(),
    ueba_row(TimeGenerated="2026-10-31T10:30:00Z", SourceIPLocation="France"),
    ueba_row(EventSource="AzureAD"),
]


def detect(capsys, source, out, *extra):
    code = cli.main(["detect", "--source", str(source), "--end", END, "--out", str(out), *extra])
    return code, capsys.readouterr().err


def test_detect_jsonl_writes_the_rule_columns_in_order(tmp_path, capsys):
    code, err = detect(capsys, write_jsonl(tmp_path / "src", ACTIVITY, UEBA), tmp_path / "r.jsonl")
    assert code == 0
    rows = results.read(tmp_path / "r.jsonl")
    assert len(rows) == 2 and all(list(r) == OUTPUT_COLUMNS for r in rows)
    assert {r["UEBASourceIPLocation"] for r in rows} == {"Netherlands", "France"}
    assert rows[0]["StartTime"] == "2026-10-31T10:00:00.1234567Z", "7 fractional digits kept"
    assert isinstance(rows[0]["UEBAActivityInsights"], dict)
    assert "AzureActivity: 9 rows read" in err and "results: 2" in err


def test_detect_parquet_lake_gives_the_same_rows_as_jsonl(tmp_path, capsys):
    detect(capsys, write_jsonl(tmp_path / "j", ACTIVITY, UEBA), tmp_path / "a.jsonl")
    code, err = detect(capsys, write_lake(tmp_path / "p", ACTIVITY, UEBA), tmp_path / "b.parquet")
    assert code == 0 and "(parquet)" in err
    key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
    assert sorted(map(key, results.read(tmp_path / "b.parquet"))) == sorted(
        map(key, results.read(tmp_path / "a.jsonl"))
    )
    assert pq.read_table(tmp_path / "b.parquet").column_names == OUTPUT_COLUMNS


def test_detect_csv_portal_export(tmp_path, capsys):
    src = tmp_path / "csv"
    src.mkdir()
    for name, rows in (("AzureActivity", ACTIVITY), ("BehaviorAnalytics", UEBA)):
        frame = pd.DataFrame(rows).rename(columns={"TimeGenerated": "TimeGenerated [UTC]"})
        frame.to_csv(src / f"{name}.csv", index=False)
    code, _ = detect(capsys, src, tmp_path / "c.jsonl")
    assert code == 0 and len(results.read(tmp_path / "c.jsonl")) == 2


def test_window_is_half_open_start_included_end_excluded(tmp_path, capsys):
    activity = run_command(
        "at-start", start="2026-10-30T00:00:00Z", statuses=("Succeeded",)
    ) + run_command("at-end", start="2026-11-01T00:00:00Z", statuses=("Succeeded",))
    ueba = [
        ueba_row(TimeGenerated="2026-10-30T00:30:00Z"),
        ueba_row(TimeGenerated="2026-10-31T23:30:00Z"),
    ]
    detect(capsys, write_jsonl(tmp_path / "s", activity, ueba), tmp_path / "w.jsonl")
    rows = results.read(tmp_path / "w.jsonl")
    assert [r["StartTime"] for r in rows] == ["2026-10-30T00:00:00Z"]


def test_period_accepts_kusto_timespans(tmp_path, capsys):
    src = write_jsonl(tmp_path / "s", ACTIVITY, UEBA)
    code, err = detect(capsys, src, tmp_path / "p.jsonl", "--period", "36h")
    assert code == 0 and "2026-10-30T12:00:00+00:00" in err


def test_zero_results_is_success_with_an_empty_file(tmp_path, capsys):
    code, err = detect(
        capsys,
        write_jsonl(tmp_path / "s", ACTIVITY, [ueba_row(EventSource="x")]),
        tmp_path / "z.jsonl",
    )
    assert code == 0 and (tmp_path / "z.jsonl").read_text() == "" and "results: 0" in err


def test_malformed_lines_are_quarantined_and_valid_rows_still_detected(tmp_path, capsys):
    bad = [
        "not json\n",
        "[1, 2]\n",
        json.dumps({**ACTIVITY[0], "TimeGenerated": None}) + "\n",
        json.dumps({**ACTIVITY[0], "TimeGenerated": "yesterday"}) + "\n",
        json.dumps({**ACTIVITY[0], "Caller": 42}) + "\n",
    ]
    src = write_jsonl(tmp_path / "s", ACTIVITY, UEBA, bad)
    code, err = detect(capsys, src, tmp_path / "q.jsonl", "--quarantine", str(tmp_path / "qq"))
    assert code == 0 and len(results.read(tmp_path / "q.jsonl")) == 2
    assert "5 quarantined" in err
    quarantined = [
        json.loads(line)
        for f in (tmp_path / "qq").glob("*.jsonl")
        for line in f.read_text().splitlines()
    ]
    reasons = sorted(q["reason"].split(" (")[0].split(" '")[0] for q in quarantined)
    assert reasons == [
        "not JSON",
        "not a JSON object",
        "null TimeGenerated",
        "unparseable TimeGenerated",
        "wrong type: Caller is a JSON int, expected a string",
    ]
    assert all(q["table"] == "AzureActivity" and q["line"] > len(ACTIVITY) for q in quarantined)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--end", "not-a-date"], "not a timestamp"),
        (["--period", "2 weeks"], "not a Kusto timespan"),
        (["--out-suffix", ".txt"], "use a .jsonl or .parquet"),
        (["--source-missing"], "is not a folder"),
    ],
    ids=["bad-end", "bad-period", "bad-output-suffix", "missing-source"],
)
def test_usage_errors_exit_2(tmp_path, capsys, args, message):
    src = write_jsonl(tmp_path / "s", ACTIVITY, UEBA)
    argv = ["detect", "--source", str(src), "--end", END, "--out", str(tmp_path / "o.jsonl")]
    if args[0] == "--out-suffix":
        argv[-1] = str(tmp_path / "o.txt")
    elif args[0] == "--source-missing":
        argv[2] = str(tmp_path / "nowhere")
    else:
        argv += args
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_missing_table_exits_2_naming_it(tmp_path, capsys):
    src = write_jsonl(tmp_path / "s", ACTIVITY, UEBA)
    (src / "BehaviorAnalytics.jsonl").unlink()
    code, err = detect(capsys, src, tmp_path / "o.jsonl")
    assert code == 2 and "BehaviorAnalytics" in err and "not found" in err


def test_missing_required_column_exits_3_naming_table_and_column(tmp_path, capsys):
    ueba = [{k: v for k, v in r.items() if k != "UsersInsights"} for r in UEBA]
    code, err = detect(capsys, write_jsonl(tmp_path / "s", ACTIVITY, ueba), tmp_path / "o.jsonl")
    assert code == 3
    assert "BehaviorAnalytics.UsersInsights: columns_exist failed (observed: column missing)" in err
    assert not (tmp_path / "o.jsonl").exists(), "no result file when the gate fails"


def test_empty_table_in_window_exits_3(tmp_path, capsys):
    ueba = [ueba_row(TimeGenerated="2026-10-20T00:00:00Z")]
    code, err = detect(capsys, write_jsonl(tmp_path / "s", ACTIVITY, ueba), tmp_path / "o.jsonl")
    assert (
        code == 3 and "BehaviorAnalytics: not_empty failed (observed: 0 rows in the window)" in err
    )


def test_cli_runs_as_a_module_in_a_subprocess(tmp_path):
    src = write_jsonl(tmp_path / "s", ACTIVITY, UEBA)
    out = tmp_path / "o.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "include.detection",
            "detect",
            "--source",
            str(src),
            "--end",
            END,
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(out.read_text().splitlines()) == 2
    assert "Created temporary directory" not in proc.stderr


def test_run_then_alerts_lists_alerts_with_tickets_and_evidence(tmp_path, capsys, detection_home):
    src = write_jsonl(tmp_path / "s", ACTIVITY, UEBA)
    assert cli.main(["run", "--source", str(src), "--end", END]) == 0
    assert cli.main(["run", "--source", str(src), "--end", END]) == 0  # idempotent
    capsys.readouterr()
    assert cli.main(["alerts", "--format", "jsonl"]) == 0
    alerts = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(alerts) == 1
    alert = alerts[0]
    assert {"id", "severity", "title", "entities", "tickets", "evidence"} <= alert.keys()
    assert alert["severity"] == RULE.severity
    assert [t["destination"] for t in alert["tickets"]] == ["file"]
    assert len(alert["evidence"]) == 2 and all(list(e) == OUTPUT_COLUMNS for e in alert["evidence"])
    assert {e["type"] for e in alert["entities"]} == {"Account", "IP", "AzureResource"}
    assert cli.main(["alerts", "show", alert["id"]]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == alert["id"]
    assert cli.main(["alerts", "show", "nope"]) == 2


def dense(
    make_row, start="2026-10-30T00:05:00Z", end="2026-11-01T00:00:00Z", every="10min", skip=None
):
    """A complete window: one row every 10 minutes, optionally with a hole [skip[0], skip[1])."""
    times = pd.date_range(start, end, freq=every, inclusive="left")
    if skip:
        times = times[(times < pd.Timestamp(skip[0])) | (times >= pd.Timestamp(skip[1]))]
    return [make_row(TimeGenerated=t.isoformat().replace("+00:00", "Z")) for t in times]


NOISE = dict(OperationNameValue="Microsoft.Storage/storageAccounts/listKeys/action")


def test_day_long_hole_exits_3_naming_table_and_check(tmp_path, capsys):
    from tests.factories import activity_row

    activity = (
        dense(
            lambda **k: activity_row(**NOISE, **k),
            skip=("2026-10-30T12:00:00Z", "2026-10-31T12:00:00Z"),
        )
        + ACTIVITY
    )
    ueba = dense(lambda **k: ueba_row(EventSource="Device logons", **k)) + UEBA
    code, err = detect(capsys, write_jsonl(tmp_path / "s", activity, ueba), tmp_path / "o.jsonl")
    assert code == 3
    assert (
        "AzureActivity.TimeGenerated: no_gap failed (observed: no rows 2026-10-30T12..23, "
        "2026-10-31T00..09, 22 hours that usually have rows)"
    ) in err, err


def test_complete_window_without_matches_succeeds_with_zero_results(tmp_path, capsys):
    from tests.factories import activity_row

    activity = dense(lambda **k: activity_row(**NOISE, **k))
    ueba = dense(lambda **k: ueba_row(EventSource="Device logons", **k))
    code, err = detect(capsys, write_jsonl(tmp_path / "s", activity, ueba), tmp_path / "o.jsonl")
    assert code == 0 and "results: 0" in err
    assert "AzureActivity: passed, complete" in err and "BehaviorAnalytics: passed, complete" in err


@pytest.mark.parametrize("validator", ["native", "ge"])
def test_both_validators_give_the_same_gate_and_result(tmp_path, capsys, validator):
    ueba = [{k: v for k, v in r.items() if k != "UsersInsights"} for r in UEBA]
    bad = write_jsonl(tmp_path / "bad", ACTIVITY, ueba)
    code, err = detect(capsys, bad, tmp_path / "o.jsonl", "--validator", validator)
    assert code == 3 and "BehaviorAnalytics.UsersInsights: columns_exist failed" in err
    code, err = detect(
        capsys,
        write_jsonl(tmp_path / "ok", ACTIVITY, UEBA),
        tmp_path / "r.jsonl",
        "--validator",
        validator,
    )
    assert code == 0 and len(results.read(tmp_path / "r.jsonl")) == 2


def test_docs_builds_great_expectations_data_docs(tmp_path, capsys):
    code, err = detect(
        capsys,
        write_jsonl(tmp_path / "s", ACTIVITY, UEBA),
        tmp_path / "r.jsonl",
        "--docs",
        str(tmp_path / "docs"),
    )
    assert code == 0 and (tmp_path / "docs" / "index.html").exists()
    assert f"data docs: {tmp_path / 'docs' / 'index.html'}" in err


def test_detect_does_not_import_great_expectations_by_default(tmp_path):
    src = write_jsonl(tmp_path / "s", ACTIVITY, UEBA)
    code = (
        "import sys; from include.detection import cli; "
        f"rc = cli.main(['detect', '--source', {str(src)!r}, '--end', {END!r}, "
        f"'--out', {str(tmp_path / 'o.jsonl')!r}]); "
        "print(rc, 'great_expectations' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.stdout.split() == ["0", "False"], proc.stderr
