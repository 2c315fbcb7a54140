"""A folder of exported tables, on this machine or on object storage: the `files` source kind.

    /path/to/folder  file:///path/to/folder            this machine (storage.LocalStorage)
    memory://lake                                      fsspec's in-memory filesystem (tests)
    abfs://<container>@<account>.dfs.core.windows.net/<folder>   Azure storage, through adlfs
    abfs://<account>.dfs.core.windows.net/             the account root (the data export layout)
    az://<container>/<folder>                          (account from AZURE_STORAGE_ACCOUNT_NAME)
    s3://<bucket>/<folder>, gs://<bucket>/<folder>      through s3fs / gcsfs, when installed

Each table lives in exactly one of these layouts (two at once is refused: which rows count would
be ambiguous):
  <Table>.jsonl          JSON Lines, Log Analytics column names (records.py)
  <Table>/               Parquet files, possibly Hive-partitioned by date= (parquet.py)
  <Table>.csv            a Log Analytics portal export (records.py)
  am-<table lowercase>/  Azure Monitor's workspace data export (export.py)
The layout is recognised per table by these names; nothing needs to be configured.

Credentials never go in the path: an abfs:// or az:// URL may carry a SAS token as its query
(`?sv=...&sig=...`), which becomes adlfs's `sas_token` and is registered with `redact`; else
adlfs finds them in the environment (AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_TOKEN,
AZURE_STORAGE_CONNECTION_STRING, a service principal) or uses DefaultAzureCredential. The DAG can
hand in a credential, or a ready fsspec filesystem as `client` (an Airflow ObjectStoragePath's
`.fs`). Messages name files by their URL without the query.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pandas as pd

from ..connections import register_secret, register_url
from ..correlation import PUSHDOWN
from ..errors import DetectionError, SourceError, UsageError
from ..storage import PACKAGES
from . import export, parquet, records
from .cache import from_setting
from .scan import Scan
from .storage import DIRECTORY, LOCAL, REGULAR, FsspecStorage

# scheme -> the package that provides it (None: fsspec itself): the schemes staging knows
FSSPEC = PACKAGES
_AZURE = {"abfs", "abfss", "az"}
# what the storage clients read from the environment that is a secret
_SECRET_ENV = (
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_CLIENT_SECRET",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(/.*)$", re.S)
_CONTAINER = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")  # Azure's naming rules


class FilesSource:
    """Tables as files in one folder (see the module doc). `scan` is the Source interface."""

    name = "files"

    def __init__(
        self,
        root,
        storage=LOCAL,
        *,
        workspaces: tuple[str, ...] = (),
        slack: timedelta | str | None = None,
        cache=None,
    ):
        self.root, self.storage = root, storage
        self.workspaces = tuple(workspaces)  # of an export: these only (default: every one)
        self.slack = export.slack_from_env(slack)
        # Parquet files' scan pieces (cache.py): None -> config.cache(), False -> none
        self.cache = from_setting(cache)

    @classmethod
    def from_url(cls, value, credential=None, client=None, **settings) -> "FilesSource":
        """The source a folder path or a file://, memory://, abfs://, az://, s3://, gs:// URL
        names. `client`: an fsspec filesystem to read through instead of building one."""
        scheme, rest = split_scheme(value)
        if scheme is None:
            return cls(Path(value), **settings)
        if scheme == "file":
            return cls(_file_path(rest), **settings)
        if scheme not in FSSPEC:
            raise UsageError(
                f"source {scheme}://...: not a kind of source known here (a folder "
                "path, file://, memory://, abfs://, az://, s3://, gs://, "
                "loganalytics:// or kusto://)"
            )
        storage, root = _fsspec(scheme, rest, credential, client)
        return cls(root, storage, **settings)

    @property
    def url(self) -> str:
        return self.storage.display(self.root)

    def __repr__(self) -> str:
        return f"FilesSource({self.url!r})"

    # --- where a table is ---------------------------------------------------------------------

    def locate(self, table: str) -> tuple[str, object]:
        """The one place `table` lives. Two layouts of one table are refused: reading either
        would silently ignore the other's rows."""
        join, root = self.storage.join, self.root
        candidates = [
            ("jsonl", join(root, f"{table}.jsonl")),
            ("parquet", join(root, table)),
            ("csv", join(root, f"{table}.csv")),
            ("export", join(root, export.container(table))),
        ]
        found = [(fmt, path) for fmt, path in candidates if self.storage.lexists(path, table)]
        if not found:
            raise SourceError(
                table,
                f"not found in {self.url} (looked for {table}.jsonl, "
                f"{table}/ of Parquet files, {table}.csv, and the data "
                f"export container {export.container(table)}/)",
            )
        if len(found) > 1:
            shown = ", ".join(self.storage.display(p) for _, p in found)
            raise SourceError(
                table,
                "found in more than one format, so which rows count is "
                f"ambiguous: {shown} (keep one)",
            )
        fmt, path = found[0]
        kind = self.storage.kind(path, table)
        shown = self.storage.display(path)
        if fmt == "parquet" and kind != DIRECTORY:
            raise SourceError(table, f"{shown} is {kind}, expected a folder of Parquet files")
        if fmt == "export" and kind != DIRECTORY:
            raise SourceError(
                table, f"{shown} is {kind}, expected the data export's container (a folder)"
            )
        if fmt in ("jsonl", "csv") and kind != REGULAR:
            raise SourceError(table, f"{shown} is {kind}, not a regular file")
        return fmt, path

    # --- the Source interface -------------------------------------------------------------------

    def scan(self, table: str, start, end, columns: dict[str, str], prefilter: bool = True) -> Scan:
        """Rows of `table` with TimeGenerated in [start, end), restricted to `columns` (name ->
        type), in TimeGenerated order (ties in the order the files hold them, so every layout of
        the same rows gives the same frame). With `prefilter`, only rows that may pass the
        query's first `where` on this table are kept (correlation.PUSHDOWN); the counts and the
        hourly profile still cover every row in the window."""
        fmt, path = self.locate(table)
        if self.workspaces and fmt != "export":
            raise SourceError(
                table,
                f"{self.storage.display(path)} holds no workspaces to "
                "choose from (only the data export layout does)",
            )
        rules = PUSHDOWN.get(table) if prefilter else None
        start, end = pd.Timestamp(start), pd.Timestamp(end)
        if fmt == "parquet":
            scan = parquet.read_parquet(
                self.storage, path, table, start, end, columns, rules, self.cache
            )
        elif fmt == "csv":
            scan = records.read_csv(self.storage, path, table, start, end, columns, rules)
        elif fmt == "jsonl":
            scan = records.read_jsonl(
                self.storage,
                [path],
                table,
                start,
                end,
                columns,
                rules,
                source=self.storage.display(path),
            )
        else:
            scan = export.read(
                self.storage, path, table, start, end, columns, rules, self.workspaces, self.slack
            )
        # A column absent from the source is absent from the frame: the quality gate names it.
        frame = scan.frame.drop(columns=scan.missing_columns)
        if "TimeGenerated" in frame and len(frame) > 1:
            frame = frame.sort_values("TimeGenerated", kind="stable")
        scan.frame = frame.reset_index(drop=True)
        return scan

    def prepare(self, table: str, start, end, columns: dict[str, str]) -> None:
        """Start building, in the background, the scan cache's pieces that a prefiltered
        `scan` of [start, end) will need (Parquet folders with a cache only; see
        parquet.prepare_parquet); returns at once. The scan itself reports any problem."""
        if self.cache is None or self.workspaces:
            return
        try:
            fmt, path = self.locate(table)
        except (DetectionError, OSError):
            return  # the scan names it
        if fmt == "parquet":
            parquet.prepare_parquet(
                self.storage,
                path,
                table,
                pd.Timestamp(start),
                pd.Timestamp(end),
                columns,
                PUSHDOWN.get(table),
                self.cache,
            )

    # --- several workspaces in one export -------------------------------------------------------

    @property
    def targets(self) -> list[str]:
        """The workspaces (resource ids) of the tables kept in the data export layout."""
        found: dict[str, str] = {}
        from .scan import TABLES

        for table in TABLES:
            path = self.storage.join(self.root, export.container(table))
            if self.storage.lexists(path, table):
                for workspace in export.workspaces(self.storage, path, table):
                    found.setdefault(workspace.lower(), workspace)
        chosen = {w.lower() for w in self.workspaces}
        return sorted(w for k, w in found.items() if not chosen or k in chosen)

    def only(self, workspace: str) -> "FilesSource":
        """This source for one workspace of its data export (one mapped task per workspace, as
        LogAnalyticsSource.only); a workspace the export lacks fails the scan, naming it."""
        return FilesSource(
            self.root,
            self.storage,
            workspaces=(workspace.strip(),),
            slack=self.slack,
            cache=self.cache or False,
        )


def split_scheme(value) -> tuple[str | None, str]:
    """(scheme, what follows `scheme:`), also for a URL a Path collapsed (`memory:/lake`); no
    scheme for a plain path."""
    text = str(value)
    found = _SCHEME.match(text)
    if not found or len(found.group(1)) == 1:  # C:/... is a drive, not a scheme
        return None, text
    return found.group(1).lower(), found.group(2)


def _file_path(rest: str) -> Path:
    """file:///abs/path, file://localhost/abs/path, or file:/abs/path (a Path collapsed it)."""
    if rest.startswith("//"):
        parts = urlsplit("file:" + rest)
        if parts.netloc not in ("", "localhost"):
            raise UsageError(f"file://{parts.netloc}/...: only local files (file:///path)")
        if parts.query or parts.fragment:
            raise UsageError("a file:// source takes no options (?...)")
        return Path(unquote(parts.path))
    return Path("/" + unquote(rest).lstrip("/"))


def _fsspec(scheme: str, rest: str, credential, client):
    """The storage and root folder of an fsspec URL (after `scheme:`)."""
    url = f"{scheme}:{rest}" if rest.startswith("//") else f"{scheme}://{rest.lstrip('/')}"
    base, _, query = url.partition("?")
    register_url(url)
    if query:
        register_secret(query)
    for name in _SECRET_ENV:
        register_secret(os.environ.get(name))
    try:
        netloc = urlsplit(base).netloc
    except ValueError:
        raise UsageError(f"source {scheme}://...: not a URL") from None
    if ":" in netloc.rpartition("@")[0]:
        raise UsageError(
            f"source {scheme}://...: credentials in the URL's user part are not "
            "accepted (use a SAS token as the query, or the environment)"
        )
    host = netloc.rpartition("@")[2] if scheme in _AZURE and "." in netloc else None
    options: dict = {}
    if query:
        if scheme not in _AZURE:
            raise UsageError(
                f"source {scheme}://...: takes no options (?...); credentials come "
                "from the environment"
            )
        options["sas_token"] = query
    if credential is not None and scheme in _AZURE:
        options["credential"] = credential
    if client is not None:
        fs = client
    else:
        import fsspec

        try:
            cls = fsspec.get_filesystem_class(scheme)
        except (ImportError, ValueError):
            package = FSSPEC[scheme]
            raise UsageError(
                f"source {scheme}://...: needs the {package} package (pip install {package})"
            ) from None
        options = {**cls._get_kwargs_from_urls(base), **options}
        try:
            fs = cls(**options)
        except Exception as exc:  # a client that cannot be built: say which, without secrets
            from ..connections import redact

            raise UsageError(
                f"source {scheme}://...: cannot open the filesystem "
                f"({type(exc).__name__}: {redact(str(exc))})"
            ) from None
    errors = ()
    if scheme in _AZURE:
        try:
            from azure.core.exceptions import AzureError
        except ImportError:  # adlfs without azure-core cannot be: nothing more to catch
            pass
        else:
            errors = (AzureError,)
    root = fs._strip_protocol(base)
    names = _CONTAINER if scheme in _AZURE else None
    return FsspecStorage(fs, scheme, host, errors, names), root


def locate(source, table: str) -> tuple[str, object]:
    """Where `table` lives in the folder `source` (see FilesSource.locate)."""
    return FilesSource.from_url(source).locate(table)
