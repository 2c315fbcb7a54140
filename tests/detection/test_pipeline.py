"""The DAG's steps as library calls: staging is per attempt, and Data Docs show what the gate saw."""

from __future__ import annotations

import json

import pytest

from include.detection import pipeline
from include.detection.errors import SourceError
from tests.factories import RULE, run_command, ueba_row

START, END = "2026-10-30T00:00:00+00:00", "2026-11-01T00:00:00+00:00"


def write_source(folder, activity, ueba):
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("AzureActivity", activity), ("BehaviorAnalytics", ueba)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture
def staged(tmp_path):
    source = write_source(tmp_path / "src", run_command(), [ueba_row(TimeGenerated="2026-10-31T09:30:00Z")])
    return {t: pipeline.extract_to_stage(source, t, START, END, tmp_path / "staging", RULE)
            for t in ("AzureActivity", "BehaviorAnalytics")}, tmp_path


def test_a_failed_re_extract_leaves_no_earlier_attempt_staged(staged):
    extracted, tmp = staged
    folder = pipeline.run_folder(tmp / "staging", RULE, START, END)
    pipeline.validate_stage(extracted["AzureActivity"], None, RULE)
    assert (folder / "AzureActivity.parquet").exists() and (folder / "quality").exists()
    with pytest.raises(SourceError):   # this attempt cannot read the source at all
        pipeline.extract_to_stage(tmp / "gone", "AzureActivity", START, END, tmp / "staging", RULE)
    for name in ("AzureActivity.parquet", "AzureActivity.stats.json", "quality/AzureActivity.validation.json"):
        assert not (folder / name).exists(), name
    # so the docs task renders only what this run staged
    assert set(pipeline.render_docs(tmp / "staging", START, END, None, RULE)) == {"BehaviorAnalytics"}


def test_data_docs_judge_volume_with_the_history_the_gate_used(staged):
    extracted, tmp = staged
    folder = pipeline.run_folder(tmp / "staging", RULE, START, END)
    checked = pipeline.validate_stage(extracted["AzureActivity"], None, RULE)
    assert not any(w["check"] == "volume_drop" for w in checked["warnings"])
    # had the gate seen runs 1,000x larger, the docs must say so too: they re-run the gate's view
    gate = folder / "quality" / "AzureActivity.validation.json"
    verdict = json.loads(gate.read_text())
    gate.write_text(json.dumps({**verdict, "history": [10**6] * 7}))
    pages = pipeline.render_docs(tmp / "staging", START, END, None, RULE)
    docs = json.loads((folder / "data_docs" / "AzureActivity" / "AzureActivity.validation.json").read_text())
    assert (folder / "data_docs" / "AzureActivity" / "index.html").exists()
    assert pages["AzureActivity"].endswith("data_docs/AzureActivity/index.html")
    assert any(w["check"] == "volume_drop" for w in docs["summary"]["warnings"])
