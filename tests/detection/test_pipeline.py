"""The DAG's steps as library calls: staging is per attempt, and Data Docs show what the gate
saw."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from include.detection import alerts, console, destinations, pipeline, storage
from include.detection.errors import SourceError
from include.detection.sources import TABLES
from include.detection.store import AlertStore
from tests.detection.test_storage import KIND_IDS, KINDS, forget, location
from tests.factories import RULE, run_command, ueba_row

START, END = "2026-10-30T00:00:00+00:00", "2026-11-01T00:00:00+00:00"


def write_source(folder, activity, ueba):
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("AzureActivity", activity), ("BehaviorAnalytics", ueba)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture
def staged(tmp_path):
    source = write_source(
        tmp_path / "src", run_command(), [ueba_row(TimeGenerated="2026-10-31T09:30:00Z")]
    )
    return {
        t: pipeline.extract_to_stage(source, t, START, END, tmp_path / "staging", RULE)
        for t in ("AzureActivity", "BehaviorAnalytics")
    }, tmp_path


def test_a_failed_re_extract_leaves_no_earlier_attempt_staged(staged):
    extracted, tmp = staged
    folder = Path(pipeline.run_folder(tmp / "staging", RULE, START, END))
    pipeline.validate_stage(extracted["AzureActivity"], None, RULE)
    assert (folder / "AzureActivity.parquet").exists() and (folder / "quality").exists()
    with pytest.raises(SourceError):  # this attempt cannot read the source at all
        pipeline.extract_to_stage(tmp / "gone", "AzureActivity", START, END, tmp / "staging", RULE)
    for name in (
        "AzureActivity.parquet",
        "AzureActivity.stats.json",
        "quality/AzureActivity.validation.json",
    ):
        assert not (folder / name).exists(), name
    # so the docs task renders only what this run staged
    assert set(pipeline.render_docs(tmp / "staging", START, END, None, RULE)) == {
        "BehaviorAnalytics"
    }


def test_data_docs_judge_volume_with_the_history_the_gate_used(staged):
    extracted, tmp = staged
    folder = Path(pipeline.run_folder(tmp / "staging", RULE, START, END))
    checked = pipeline.validate_stage(extracted["AzureActivity"], None, RULE)
    assert not any(w["check"] == "volume_drop" for w in checked["warnings"])
    # had the gate seen runs 1,000x larger, the docs must say so too: they re-run the gate's view
    gate = folder / "quality" / "AzureActivity.validation.json"
    verdict = json.loads(gate.read_text())
    gate.write_text(json.dumps({**verdict, "history": [10**6] * 7}))
    pages = pipeline.render_docs(tmp / "staging", START, END, None, RULE)
    docs = json.loads(
        (folder / "data_docs" / "AzureActivity" / "AzureActivity.validation.json").read_text()
    )
    assert (folder / "data_docs" / "AzureActivity" / "index.html").exists()
    assert pages["AzureActivity"].endswith("data_docs/AzureActivity/index.html")
    assert any(w["check"] == "volume_drop" for w in docs["summary"]["warnings"])


# --- issue #12 point 3: workers share only storage ------------------------------------------------


@pytest.fixture(params=KINDS, ids=KIND_IDS)
def area(request, tmp_path):
    url = location(request.param, tmp_path)
    yield url
    forget(url)


def test_the_dags_steps_run_end_to_end_on_shared_storage(area, tmp_path):
    """extract, validate, correlate, build_alerts, deliver (file tickets) and data_docs as the
    DAG chains them, with staging and tickets at `area` (a path, file:// or memory://): every
    location a step hands the next is in the staging area's own form, never a host-local path,
    and the console reads the run's verdicts and Data Docs back from there."""
    staging, tickets = storage.join(area, "staging"), storage.join(area, "tickets")
    source = write_source(
        tmp_path / "src", run_command(), [ueba_row(TimeGenerated="2026-10-31T09:30:00Z")]
    )
    (tmp_path / "store").mkdir()
    with AlertStore(str(tmp_path / "store" / "alerts.db")) as store:
        extracted = {
            t: pipeline.extract_to_stage(source, t, START, END, staging, RULE, store)
            for t in TABLES
        }
        checked = {t: pipeline.validate_stage(e, store, RULE) for t, e in extracted.items()}
        correlated = pipeline.correlate_stage(
            checked["AzureActivity"], checked["BehaviorAnalytics"]
        )
        built = alerts.build_alerts(
            pipeline.load_result(correlated["path"]),
            RULE,
            START,
            END,
            alerts.worst_quality(*(c["status"] for c in checked.values())),
        )
        store.upsert(built)
        settings = {"file": {"folder": tickets}}
        assert destinations.deliver_pending(store, ["file"], settings=settings) == {
            "file": {"delivered": 1, "failed": 0}
        }
        assert destinations.deliver_pending(store, ["file"], settings=settings) == {
            "file": {"delivered": 0, "failed": 0}
        }, "nothing twice"
        pages = pipeline.render_docs(staging, START, END, store, RULE)

    folder = pipeline.run_folder(staging, RULE, START, END)
    handed_on = [
        *(e[k] for e in extracted.values() for k in ("path", "stats")),
        *(c["path"] for c in checked.values()),
        correlated["path"],
        *pages.values(),
    ]
    assert all(p.startswith(folder + "/") for p in handed_on), handed_on
    assert correlated["results"] == 1 and len(built) == 1
    (alert,) = built
    assert storage.walk(tickets) == [f"{alert['id']}.json"]
    ticket = json.loads(storage.read_text(storage.join(tickets, f"{alert['id']}.json")))
    assert ticket["id"] == alert["id"] and ticket["evidence"] == alert["evidence"]
    assert {
        "AzureActivity.parquet",
        "AzureActivity.stats.json",
        "result.parquet",
        "quality/AzureActivity.validation.json",
        "data_docs/AzureActivity/index.html",
    } <= set(storage.walk(folder))

    name = pipeline.run_folder_name(START, END)
    quality = console.run_quality(staging, RULE.id, START, END)
    assert {t: (q["verdict"]["status"], q["docs"]) for t, q in quality.items()} == {
        t: (checked[t]["status"], True) for t in TABLES
    }
    page = console.docs_file(staging, RULE.id, name, "AzureActivity", "index.html")
    assert page.media_type == "text/html" and b"AzureActivity" in page.data
    if area.startswith("memory://"):
        assert sorted(p.name for p in tmp_path.iterdir()) == ["src", "store"], (
            "nothing staged on this host's disk"
        )
