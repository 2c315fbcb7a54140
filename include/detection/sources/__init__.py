"""Reading AzureActivity and BehaviorAnalytics for a query period, wherever they are kept: one
interface for every kind of source, as destinations have one.

    source = sources.open_source(value, credential=None, client=None)
    scan = source.scan(table, start, end, columns, prefilter=True)      # a Scan

`value` is
  a folder path, or a file://, memory://, abfs://, az://, s3://, gs:// URL   folder.py (`files`):
      <Table>.jsonl, <Table>/ of Parquet, <Table>.csv, or Azure Monitor's data export layout
      (am-<table>/WorkspaceResourceId=/...; export.py), recognised per table by name
  loganalytics://<workspace-id>[,...]     a Log Analytics workspace (remote/loganalytics.py)
  kusto://<cluster-host>/<database>       an Azure Data Explorer database (remote/adx.py)
or a source already opened. `credential` is an azure-core TokenCredential (the DAG's Airflow
connection), `client` a ready SDK client or fsspec filesystem; the CLI passes neither.

A Scan holds the rule's columns for the window's candidate rows (in TimeGenerated order), the
rows read and in the window, the hourly profile, the newest time, the columns the source lacks
and the quarantine, so the quality gate, the correlation, the alerts and the DAG never know where
rows came from. A source that cannot answer in full raises SourceError; it never returns less.

Everything in a source is data, never code: file names reach DuckDB only as bound parameters
(SQL text holds nothing but the rule's own column names), only regular files are opened, and
every string leaves as valid Unicode (invalid UTF-8 and lone surrogates become U+FFFD, as Kusto
ingestion stores them; the row is kept and listed in the quarantine as repaired).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..errors import UsageError
from .folder import FSSPEC, FilesSource, locate, split_scheme
from .scan import (
    DATETIME,
    DYNAMIC,
    JSON_TEXT_STRINGS,
    REPAIRED,
    TABLES,
    Scan,
    _hourly,
    _keep,
    _newest,
    _parse_times,
    _ticks,
    _typed,
)

__all__ = [
    "DATETIME",
    "DYNAMIC",
    "JSON_TEXT_STRINGS",
    "REPAIRED",
    "TABLES",
    "Scan",
    "Source",
    "FilesSource",
    "KINDS",
    "open_source",
    "read_table",
    "locate",
    "local_path",
    "kind",
    "_hourly",
    "_keep",
    "_newest",
    "_parse_times",
    "_ticks",
    "_typed",
]


@runtime_checkable
class Source(Protocol):
    """What every kind of source offers (FilesSource, remote.LogAnalyticsSource, AdxSource)."""

    name: str  # the kind: "files", "loganalytics", "kusto"

    @property
    def url(self) -> str:
        """Where it reads, for messages: never a credential."""

    def scan(self, table: str, start, end, columns: dict[str, str], prefilter: bool = True) -> Scan:
        """Rows of `table` with TimeGenerated in [start, end), restricted to `columns` (name ->
        the rule's type). With `prefilter`, rows the rule's first `where` on this side drops may
        be left out (correlation.PUSHDOWN); the profile always covers every row of the window."""


# URL scheme -> kind (None: a path on this machine)
KINDS = {
    None: "files",
    "file": "files",
    **{s: "files" for s in FSSPEC},
    "loganalytics": "loganalytics",
    "kusto": "kusto",
}


def kind(value) -> str:
    """Which kind of source `value` names ("files", "loganalytics", "kusto")."""
    if isinstance(value, Source):
        return value.name
    scheme = split_scheme(value)[0]
    if scheme not in KINDS:
        known = ", ".join(sorted(f"{s}://" for s in KINDS if s))
        raise UsageError(
            f"source {scheme}://...: not a kind of source known here (a folder path, or {known})"
        )
    return KINDS[scheme]


def local_path(value) -> Path | None:
    """The folder on this machine that `value` names, or None for any other kind."""
    if isinstance(value, FilesSource):
        return value.root if isinstance(value.root, Path) else None
    if isinstance(value, Source):
        return None
    scheme, _ = split_scheme(value)
    if scheme is None:
        return Path(value)
    if scheme == "file":
        return FilesSource.from_url(value).root
    return None


def open_source(value, credential=None, client=None, cache=None) -> Source:
    """The source `value` names (see the module doc); a Source is returned as it is. `cache`
    (folders only; cache.py): None -> config.cache() (DETECTION_CACHE), False -> no scan cache,
    or a folder to keep it in. Remote sources are never cached."""
    if isinstance(value, Source):
        return value
    if kind(value) == "files":
        return FilesSource.from_url(value, credential=credential, client=client, cache=cache)
    from .. import remote  # the SDKs load only when a remote source is used

    return remote.from_url(str(value), credential=credential, client=client)


def read_table(
    source,
    table: str,
    start: datetime,
    end: datetime,
    columns: dict[str, str],
    prefilter: bool = True,
) -> Scan:
    """Rows of `table` with TimeGenerated in [start, end), restricted to `columns` (name -> type),
    from any source `open_source` takes. With `prefilter`, only rows that pass the query's first
    `where` on this table are kept (see correlation.PUSHDOWN); the counts and hourly profile
    still cover every row in the window."""
    return open_source(source).scan(table, start, end, columns, prefilter)
