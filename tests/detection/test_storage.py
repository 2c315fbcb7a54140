"""Issue #12 point 3: the files one task writes and another reads back (staging, verdicts, Data
Docs, quarantine, `file` tickets) go through one module, so they can live on any fsspec store;
the same behaviour on a local path, a file:// URL and fsspec's memory:// filesystem."""

from __future__ import annotations

import json
import sys
import uuid

import fsspec
import pyarrow as pa
import pytest

from include.detection import console, storage
from include.detection.connections import redact
from include.detection.errors import UsageError

KINDS = ["path", "file-url", "memory"]
KIND_IDS = ["a local path", "a file:// URL", "memory://"]


def location(kind: str, tmp_path) -> str:
    if kind == "path":
        return str(tmp_path / "area")
    if kind == "file-url":
        return (tmp_path / "area").as_uri()
    return f"memory://test-{uuid.uuid4().hex}/area"


def forget(url: str) -> None:
    """Drop what a test wrote to memory:// (one filesystem for the whole process)."""
    if url.startswith("memory://"):
        memory = fsspec.filesystem("memory")
        root = url.removeprefix("memory://").split("/")[0]
        if memory.exists(f"/{root}"):
            memory.rm(f"/{root}", recursive=True)


@pytest.fixture(params=KINDS, ids=KIND_IDS)
def area(request, tmp_path):
    url = location(request.param, tmp_path)
    yield url
    forget(url)


def names_in(url: str) -> list[str]:
    return storage.walk(url)


def test_join_keeps_the_form_it_was_given(tmp_path):
    assert storage.join(str(tmp_path), "a", "b.json") == f"{tmp_path}/a/b.json"
    assert storage.join(tmp_path.as_uri(), "a", "b.json") == f"{tmp_path.as_uri()}/a/b.json"
    assert storage.join("memory://x/", "a") == "memory://x/a"
    assert storage.join("memory://", "a") == "memory://a"
    assert storage.join("s3://bucket", "r", "f") == "s3://bucket/r/f"
    assert storage.join(str(tmp_path), "/etc/passwd") == f"{tmp_path}/etc/passwd", (
        "a name never replaces the base"
    )


def test_what_is_written_is_read_back_and_removed(area):
    target = storage.join(area, "run", "stats.json")
    assert not storage.exists(target) and not storage.is_file(target)
    assert storage.write_text(target, "é naïve") == target
    assert storage.read_text(target) == "é naïve" and storage.is_file(target)
    storage.write_bytes(target, b"\x00\xff")
    assert storage.read_bytes(target) == b"\x00\xff"
    assert names_in(area) == ["run/stats.json"], "no temporary file left beside it"
    storage.rm(target)
    assert not storage.exists(target)
    storage.rm(target)  # already gone: nothing to do
    with pytest.raises(FileNotFoundError):
        storage.rm(target, missing_ok=False)


def test_reading_a_missing_file_or_a_folder_is_file_not_found(area):
    storage.write_text(storage.join(area, "folder", "f.txt"), "x")
    for missing in (storage.join(area, "nope.json"), storage.join(area, "folder")):
        with pytest.raises(FileNotFoundError):
            storage.read_bytes(missing)
        assert not storage.is_file(missing)


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(area):
    target = storage.join(area, "result.parquet")
    storage.write_text(target, "old")
    with pytest.raises(RuntimeError):
        with storage.writing(target) as (fs, path):
            with fs.open(path, "wb") as fh:
                fh.write(b"half a file")
            raise RuntimeError("writer crashed")
    assert storage.read_text(target) == "old"
    assert names_in(area) == ["result.parquet"]


def test_parquet_round_trips_through_the_filesystem(area):
    table = pa.table({"Caller": ["a@contoso.com", None], "n": [1, 2]})
    target = storage.join(area, "rule", "AzureActivity.parquet")
    assert storage.write_parquet(table, target) == target
    assert storage.read_parquet(target).equals(table)
    assert names_in(area) == ["rule/AzureActivity.parquet"]
    with pytest.raises(FileNotFoundError):
        storage.read_parquet(storage.join(area, "rule", "missing.parquet"))


def test_a_tree_is_copied_and_what_an_older_copy_had_is_removed(area, tmp_path):
    local = tmp_path / "rendered"
    (local / "static" / "css").mkdir(parents=True)
    (local / "index.html").write_text("<html>new</html>")
    (local / "static" / "css" / "s.css").write_text("body {}")
    target = storage.join(area, "data_docs", "AzureActivity")
    storage.write_text(storage.join(target, "validations", "old-run.html"), "stale page")
    storage.write_text(storage.join(target, "index.html"), "<html>old</html>")
    assert storage.put_tree(local, target) == ["index.html", "static/css/s.css"]
    assert names_in(target) == ["index.html", "static/css/s.css"]
    assert storage.read_text(storage.join(target, "index.html")) == "<html>new</html>"


def test_walking_a_folder_that_is_not_there_lists_nothing(area):
    assert storage.walk(storage.join(area, "never-written")) == []


BAD_URLS = {
    "a SAS token in the query": "abfs://c@acct.dfs.core.windows.net/staging?sv=2024&sig=S3CR3Tsig",
    "a password in the user part": "memory://user:S3CR3Tpw@host/staging",
}


@pytest.mark.parametrize("url", BAD_URLS.values(), ids=BAD_URLS.keys())
def test_a_storage_url_carrying_a_secret_is_refused_without_echoing_it(url):
    """Staging URLs are logged and travel in XCom, so they must never hold a credential."""
    with pytest.raises(UsageError, match="no password or query") as caught:
        storage.write_text(storage.join(url, "x.json"), "{}")
    assert "S3CR3T" not in str(caught.value)
    assert "S3CR3T" not in redact(url), "registered, so a log line quoting the URL is masked"


MISSING = {"s3fs": "s3://bucket/staging", "gcsfs": "gs://bucket/staging"}


@pytest.mark.parametrize("package,url", MISSING.items(), ids=[f"needs {p}" for p in MISSING])
def test_a_store_whose_package_is_missing_is_a_usage_error_naming_it(package, url, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)  # as if not installed, whatever is here
    with pytest.raises(UsageError, match=f"pip install {package}"):
        storage.read_bytes(storage.join(url, "x"))


def test_a_file_url_of_another_host_is_refused():
    with pytest.raises(UsageError, match="only local files"):
        storage.local_path("file://fileserver/share/staging")
    assert str(storage.local_path("file://localhost/srv/staging")) == "/srv/staging"
    assert str(storage.local_path("file:///srv/my%20staging")) == "/srv/my staging"


# --- the console reads Data Docs and verdicts from the staging area, wherever it is -------------

RULE_ID = "rule-1"
FOLDER = "20261030T000000Z--20261101T000000Z"
START, END = "2026-10-30T00:00:00Z", "2026-11-01T00:00:00Z"


@pytest.fixture
def docs_area(area):
    """A staging area with one run's Data Docs and verdict, and secrets beside them."""
    run = storage.join(area, RULE_ID, FOLDER)
    docs = storage.join(run, "data_docs", "AzureActivity")
    storage.write_text(storage.join(docs, "index.html"), "<html>docs of the run</html>")
    storage.write_text(storage.join(docs, "static", "s.css"), "body {}")
    storage.write_text(
        storage.join(run, "quality", "AzureActivity.validation.json"),
        '{"summary": {"status": "passed", "summary": "42 rows in window"}}',
    )
    storage.write_text(storage.join(run, "quality", "secret.json"), "SECRET-VERDICT")
    storage.write_text(storage.join(area, "alerts.db"), "SECRET-STORE")
    return area


def test_the_console_serves_data_docs_from_the_staging_area(docs_area):
    page = console.docs_file(docs_area, RULE_ID, FOLDER, "AzureActivity", "")
    assert page.data == b"<html>docs of the run</html>" and page.media_type == "text/html"
    css = console.docs_file(docs_area, RULE_ID, FOLDER, "AzureActivity", "static/s.css")
    assert css.data == b"body {}" and css.media_type == "text/css"


TRAVERSALS = {
    "dot-dot": "../../../alerts.db",
    "into the verdicts": "../../quality/secret.json",
    "absolute": "/alerts.db",
    "backslash": "..\\..\\..\\alerts.db",
    "empty segment": "static//s.css",
    "dot segment": "./index.html",
    "a folder": "static",
    "missing": "nope.html",
    "nul": "index.html\x00",
}


@pytest.mark.parametrize("path", TRAVERSALS.values(), ids=TRAVERSALS.keys())
def test_the_console_never_reads_outside_the_runs_data_docs(docs_area, path):
    with pytest.raises(FileNotFoundError):
        console.docs_file(docs_area, RULE_ID, FOLDER, "AzureActivity", path)


@pytest.mark.parametrize(
    "folder,table",
    [("..", "AzureActivity"), (FOLDER, "../quality"), (FOLDER, "SecurityAlert")],
    ids=["folder not a run folder", "table a path", "table not read"],
)
def test_the_console_takes_only_a_run_folder_and_a_table_it_knows(docs_area, folder, table):
    with pytest.raises(FileNotFoundError):
        console.docs_file(docs_area, RULE_ID, folder, table, "index.html")


def test_the_console_reads_verdicts_from_the_staging_area(docs_area):
    quality = console.run_quality(docs_area, RULE_ID, START, END)
    assert quality["AzureActivity"] == {
        "table": "AzureActivity",
        "workspace": None,
        "verdict": {"status": "passed", "summary": "42 rows in window"},
        "docs": True,
        "folder": FOLDER,
    }
    assert quality["BehaviorAnalytics"] == {
        "table": "BehaviorAnalytics",
        "workspace": None,
        "verdict": None,
        "docs": False,
        "folder": FOLDER,
    }
    storage.write_text(
        storage.join(docs_area, RULE_ID, FOLDER, "quality", "BehaviorAnalytics.validation.json"),
        "{not json",
    )
    broken = console.run_quality(docs_area, RULE_ID, START, END)["BehaviorAnalytics"]["verdict"]
    assert broken["status"] == "unreadable"


def test_subfolders_lists_the_folders_directly_inside_and_no_file(area):
    assert storage.subfolders(area) == []  # absent: nothing, not an error
    for name in ("workspace=b/x.json", "workspace=a/deep/y.json", "file.json"):
        storage.write_text(storage.join(area, name), "{}")
    assert storage.subfolders(area) == ["workspace=a", "workspace=b"]


def test_the_console_lists_each_workspaces_verdicts_of_a_run(area):
    """A run over several workspaces stages each in `workspace=<id>/` of its run folder."""
    for workspace, status in (("w-1", "passed"), ("w-2", "failed")):
        storage.write_text(
            storage.join(
                area,
                RULE_ID,
                FOLDER,
                f"workspace={workspace}",
                "quality",
                "AzureActivity.validation.json",
            ),
            json.dumps({"summary": {"status": status, "summary": status}}),
        )
    quality = console.run_quality(area, RULE_ID, START, END)
    assert {
        k: (q["table"], q["workspace"], q["verdict"] and q["verdict"]["status"], q["folder"])
        for k, q in quality.items()
    } == {
        "AzureActivity (w-1)": ("AzureActivity", "w-1", "passed", f"{FOLDER}~workspace=w-1"),
        "BehaviorAnalytics (w-1)": ("BehaviorAnalytics", "w-1", None, f"{FOLDER}~workspace=w-1"),
        "AzureActivity (w-2)": ("AzureActivity", "w-2", "failed", f"{FOLDER}~workspace=w-2"),
        "BehaviorAnalytics (w-2)": ("BehaviorAnalytics", "w-2", None, f"{FOLDER}~workspace=w-2"),
    }
    only = console.run_quality(area, RULE_ID, START, END, workspace="w-2")
    assert list(only) == ["AzureActivity (w-2)", "BehaviorAnalytics (w-2)"]
