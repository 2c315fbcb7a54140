"""A folder of tables on object storage (issue #10, point 2): any layout through fsspec reads as it
does on local disk, with the same safety (names are data, only files are read), and a source
URL's credentials (an Azure SAS token) never reach a message."""

import io
import json
import os
from pathlib import Path
from uuid import uuid4

import fsspec
import pandas as pd
import pyarrow.parquet as pq
import pytest

from include.detection import cli, config, sources
from include.detection.connections import redact
from include.detection.errors import SourceError, UsageError
from tests.detection.test_cli import ACTIVITY, END, UEBA
from tests.detection.test_sources import COLS, ROWS, START
from tests.detection.test_sources import END as WINDOW_END
from tests.detection.test_sources_hostile import INJECTIONS, files_under, same_scan
from tests.factories import RULE, activity_row
from tests.fakes import layouts

TABLES = {"AzureActivity": ACTIVITY, "BehaviorAnalytics": UEBA}


@pytest.fixture
def memory():
    """(fs, root, url) of a fresh folder on fsspec's in-memory filesystem; removed after."""
    fs = fsspec.filesystem("memory")
    root = f"/src-{uuid4().hex}"
    yield fs, root, f"memory://{root}"
    for key in [k for k in fs.store if k.startswith(root + "/")]:
        del fs.store[key]
    fs.pseudo_dirs[:] = [d for d in fs.pseudo_dirs if not d.startswith(root)]


def both(tmp_path, memory, write):
    """`write(put)` on local disk and on memory://; the two sources."""
    fs, root, url = memory
    write(layouts.on_disk(tmp_path / "local"))
    write(layouts.on_fsspec(fs, root))
    return tmp_path / "local", url


LAYOUTS = {
    "jsonl": lambda put: layouts.jsonl(put, TABLES),
    "parquet": lambda put: layouts.parquet(put, TABLES, RULE.inputs),
    "csv": lambda put: layouts.portal_csv(put, TABLES, RULE.inputs),
    "export": lambda put: layouts.export(put, TABLES),
}


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
@pytest.mark.parametrize("table", sorted(TABLES), ids=sorted(TABLES))
def test_every_layout_on_memory_reads_as_on_local_disk(tmp_path, memory, layout, table):
    local, url = both(tmp_path, memory, layout)
    a = sources.read_table(local, table, START, WINDOW_END, RULE.inputs[table], prefilter=False)
    b = sources.read_table(url, table, START, WINDOW_END, RULE.inputs[table], prefilter=False)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert (a.format, a.rows_read, a.rows_in_window, a.hourly, a.newest, a.missing_columns) == (
        b.format,
        b.rows_read,
        b.rows_in_window,
        b.hourly,
        b.newest,
        b.missing_columns,
    )
    assert b.source.startswith(url)


def test_a_url_that_went_through_a_path_still_names_the_memory_folder(tmp_path, memory):
    """intervals.py and older callers wrap the source in Path(), which merges `//`."""
    _, url = both(tmp_path, memory, LAYOUTS["jsonl"])
    scan = sources.read_table(Path(url), "AzureActivity", START, WINDOW_END, COLS)
    assert scan.rows_in_window == 8 and sources.open_source(Path(url)).url == url


def put_parquet(fs, path, rows):
    frame = pd.DataFrame(rows)
    frame["TimeGenerated"] = pd.to_datetime(frame["TimeGenerated"], utc=True, format="ISO8601")
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    fs.pipe(path, buffer.getvalue())


@pytest.mark.parametrize("parts", INJECTIONS.values(), ids=INJECTIONS.keys())
def test_a_hostile_parquet_file_name_on_object_storage_runs_no_sql(
    tmp_path, monkeypatch, memory, parts
):
    fs, root, url = memory
    folder = f"{root}/AzureActivity/date=2026-10-31"
    put_parquet(fs, f"{folder}/part-0.parquet", ROWS)
    put_parquet(fs, f"{folder}/{'/'.join(parts)}", [activity_row(CorrelationId="hostile")])
    monkeypatch.chdir(tmp_path)
    scan = sources.read_table(url, "AzureActivity", START, WINDOW_END, COLS)
    assert files_under(tmp_path) == [], "reading wrote a file"
    assert sorted(scan.frame["CorrelationId"]) == ["corr-1"] * 3 + ["hostile"]


def test_glob_characters_in_names_on_object_storage_read_each_file_once(memory):
    fs, root, url = memory
    names = ["part-0.parquet", "*.parquet", "p?rt-0.parquet", "[p]art-0.parquet"]
    for i, name in enumerate(names):
        put_parquet(fs, f"{root}/AzureActivity/{name}", [activity_row(CorrelationId=f"f{i}")])
    scan = sources.read_table(url, "AzureActivity", START, WINDOW_END, COLS)
    assert scan.rows_read == len(names)
    assert sorted(scan.frame["CorrelationId"]) == [f"f{i}" for i in range(len(names))]


def test_parquet_on_object_storage_is_scanned_by_duckdb_with_the_window_pushed_down(
    tmp_path, memory
):
    """The same rows as the local Parquet tests: half-open window at 100 ns, 3 of 6 rows."""
    fs, root, url = memory
    put_parquet(fs, f"{root}/AzureActivity/date=2026-10-31/part-0.parquet", ROWS)
    table = pq.read_table(
        io.BytesIO(fs.cat(f"{root}/AzureActivity/date=2026-10-31/part-0.parquet"))
    )
    local = tmp_path / "AzureActivity" / "date=2026-10-31"
    local.mkdir(parents=True)
    pq.write_table(table, local / "part-0.parquet")
    a = sources.read_table(tmp_path, "AzureActivity", START, WINDOW_END, COLS)
    b = sources.read_table(url, "AzureActivity", START, WINDOW_END, COLS)
    assert b.format == "parquet" and b.rows_in_window == 3 and b.rows_read == len(ROWS)
    same_scan(a, b)


def test_a_corrupt_parquet_file_on_object_storage_is_named(memory):
    fs, root, url = memory
    put_parquet(fs, f"{root}/AzureActivity/part-0.parquet", ROWS)
    fs.pipe(f"{root}/AzureActivity/part-1.parquet", b"not parquet at all")
    with pytest.raises(SourceError) as err:
        sources.read_table(url, "AzureActivity", START, WINDOW_END, COLS)
    assert str(err.value).startswith("AzureActivity: cannot read Parquet file memory:///")
    assert "part-1.parquet" in str(err.value)


def test_a_table_in_two_layouts_on_object_storage_is_ambiguous(memory):
    fs, root, url = memory
    layouts.jsonl(layouts.on_fsspec(fs, root), TABLES)
    put_parquet(fs, f"{root}/AzureActivity/part-0.parquet", ROWS)
    with pytest.raises(SourceError, match="AzureActivity: found in more than one format"):
        sources.read_table(url, "AzureActivity", START, WINDOW_END, COLS)


# --- The command line takes every kind; only a local folder is checked up front ----------------


def test_detect_reads_a_folder_on_object_storage(tmp_path, memory, capsys):
    local, url = both(tmp_path, memory, LAYOUTS["jsonl"])
    outs = []
    for source in (local, url):
        out = tmp_path / f"r{len(outs)}.jsonl"
        assert cli.main(["detect", "--source", str(source), "--end", END, "--out", str(out)]) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] and outs[0].count(b"\n") == 2
    assert "AzureActivity: 9 rows read (jsonl), 8 in window" in capsys.readouterr().err


def test_detect_on_a_missing_bucket_folder_names_what_it_looked_for(memory, capsys, tmp_path):
    _, _, url = memory
    code = cli.main(["detect", "--source", url, "--end", END, "--out", str(tmp_path / "r.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and "is not a folder" not in err
    assert f"error: AzureActivity: not found in {url}" in err


@pytest.mark.parametrize(
    "source, problem",
    [
        ("ftp://example.org/lake", "not a kind of source known here"),
        ("s3://bucket/lake", "needs the s3fs package (pip install s3fs)"),
        ("gs://bucket/lake", "needs the gcsfs package (pip install gcsfs)"),
        ("file://fileserver/share/lake", "only local files"),
        ("memory://lake?token=x", "takes no options"),
    ],
    ids=[
        "an-unknown-scheme",
        "s3-without-s3fs",
        "gcs-without-gcsfs",
        "a-remote-file-url",
        "options-on-memory",
    ],
)
def test_a_source_url_that_cannot_be_read_is_a_usage_error(tmp_path, capsys, source, problem):
    with pytest.raises(UsageError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        sources.open_source(source)
    code = cli.main(
        ["detect", "--source", source, "--end", END, "--out", str(tmp_path / "r.jsonl")]
    )
    assert code == 2 and problem in capsys.readouterr().err


def test_a_file_url_is_the_local_folder(tmp_path, capsys):
    layouts.jsonl(layouts.on_disk(tmp_path / "my lake"), TABLES)
    url = (tmp_path / "my lake").as_uri()
    assert sources.local_path(url) == tmp_path / "my lake"
    assert (
        cli.main(["detect", "--source", url, "--end", END, "--out", str(tmp_path / "r.jsonl")]) == 0
    )
    missing = (tmp_path / "nowhere").as_uri()
    assert (
        cli.main(["detect", "--source", missing, "--end", END, "--out", str(tmp_path / "r.jsonl")])
        == 2
    )
    assert f"--source {tmp_path / 'nowhere'} is not a folder" in capsys.readouterr().err


# --- Azure storage: a SAS token is a credential -------------------------------------------------

SIG = "Zm9vYmFyU2VjcmV0U2lnbmF0dXJl%3D"
SAS_URL = (
    "abfs://am-exports@contosolake.dfs.core.windows.net/?sv=2024-11-04&ss=b&srt=co"
    f"&sp=rl&se=2026-12-01T00:00:00Z&sig={SIG}"
)


def test_a_sas_token_becomes_the_filesystems_credential_and_never_its_name():
    source = sources.open_source(SAS_URL)
    assert source.url == "abfs://am-exports@contosolake.dfs.core.windows.net/"
    assert source.storage.fs.account_name == "contosolake"
    assert source.storage.fs.sas_token.endswith(SIG)
    assert "sig=" not in source.url and SIG not in repr(source)
    assert SIG not in redact(
        f"GET https://contosolake.blob.core.windows.net/x?sig={SIG}"
    ) and "Zm9vYmFyU2VjcmV0U2lnbmF0dXJl" not in redact("Zm9vYmFyU2VjcmV0U2lnbmF0dXJl=")


def test_storage_errors_that_echo_the_sas_url_are_masked_on_the_command_line(
    tmp_path, capsys, monkeypatch
):
    """Azure's errors quote the request URL, SAS included: the CLI prints the table, the place
    and the reason, never the signature."""
    from adlfs import AzureBlobFileSystem
    from azure.core.exceptions import ClientAuthenticationError

    def refuse(self, path, **kwargs):
        raise ClientAuthenticationError(
            "Server failed to authenticate the request. RequestUrl: https://contosolake.blob."
            f"core.windows.net/am-exports?restype=container&sv=2024-11-04&sig={SIG}"
        )

    monkeypatch.setattr(AzureBlobFileSystem, "exists", refuse)
    code = cli.main(
        ["detect", "--source", SAS_URL, "--end", END, "--out", str(tmp_path / "r.jsonl")]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert (
        "error: AzureActivity: cannot read abfs://am-exports@contosolake.dfs.core.windows."
        "net/AzureActivity.jsonl: Server failed to authenticate" in err
    )
    assert SIG not in err and "Zm9vYmFyU2VjcmV0U2lnbmF0dXJl" not in err


def test_credentials_in_the_user_part_of_a_storage_url_are_refused_unechoed():
    with pytest.raises(UsageError) as err:
        sources.open_source("abfs://user:hunter2secret@contosolake.dfs.core.windows.net/lake")
    assert "hunter2secret" not in str(err.value) and "user part" in str(err.value)


def test_detection_source_keeps_a_url_whole_and_registers_its_secrets(monkeypatch, tmp_path):
    monkeypatch.setenv("DETECTION_SOURCE", SAS_URL)
    assert config.source() == SAS_URL
    assert SIG not in redact(f"echo {SIG}")
    monkeypatch.setenv("DETECTION_SOURCE", str(tmp_path))
    assert config.source() == tmp_path


def test_a_secret_from_the_storage_environment_is_masked(monkeypatch):
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", "c2VjcmV0LWFjY291bnQta2V5LXZhbHVl")
    sources.open_source("abfs://data@contosolake.dfs.core.windows.net/lake")
    assert "c2VjcmV0" not in redact("key c2VjcmV0LWFjY291bnQta2V5LXZhbHVl leaked")


def test_a_ready_filesystem_can_be_handed_in(tmp_path, memory):
    """The DAG's way: an fsspec filesystem built from an Airflow connection (ObjectStoragePath's
    `.fs`) is read through as it is."""
    fs, root, url = memory
    layouts.jsonl(layouts.on_fsspec(fs, root), TABLES)
    source = sources.open_source(url, client=fs)
    assert source.storage.fs is fs
    assert source.scan("AzureActivity", START, WINDOW_END, COLS).rows_in_window == 8


def test_jsonl_on_object_storage_keeps_the_quarantine_with_the_files_url(memory):
    fs, root, url = memory
    rows = b"".join(json.dumps(r).encode() + b"\n" for r in ACTIVITY) + b"{broken\n"
    fs.pipe(f"{root}/AzureActivity.jsonl", rows)
    scan = sources.read_table(url, "AzureActivity", START, WINDOW_END, COLS)
    (entry,) = scan.quarantine
    assert entry["source"] == f"memory://{root}/AzureActivity.jsonl"
    assert entry["line"] == len(ACTIVITY) + 1 and entry["raw"] == "{broken"
    assert os.path.basename(entry["source"]) == "AzureActivity.jsonl"


def test_at_an_account_root_only_container_names_are_asked_about(monkeypatch):
    """adlfs takes a container it cannot query (`AzureActivity.jsonl` is no valid name: 400)
    for one that exists, which made the export look ambiguous; such names are never asked."""
    asked = []

    def exists(path, **kwargs):
        asked.append(path)
        return path == "am-azureactivity"

    source = sources.open_source("abfs://contosolake.dfs.core.windows.net/")
    monkeypatch.setattr(source.storage.fs, "exists", exists)  # no network: adlfs answers this
    monkeypatch.setattr(
        source.storage.fs, "info", lambda path, **kw: {"name": path, "type": "directory"}
    )
    assert source.locate("AzureActivity") == ("export", "am-azureactivity")
    assert asked == ["am-azureactivity"]
