"""Where a folder's files are, and how they are listed and opened: on this machine
(`LocalStorage`) or behind fsspec (`FsspecStorage`: memory://, abfs:// and az:// through adlfs,
s3:// through s3fs, gs:// through gcsfs). Listing is kept apart from reading, as dlt's
filesystem source keeps it: the readers get names and binary file objects from here, so a local
folder and a bucket share one code path.

Safety, whatever the storage: only regular files are opened (a FIFO, socket or device is refused,
never waited on), every failure is a SourceError naming the table and the file (credentials
masked), and a name is data: it reaches DuckDB only as a bound parameter.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from contextlib import contextmanager
from pathlib import Path

from ..connections import redact
from ..errors import DetectionError, SourceError

_SKIP = (".", "_")  # writers' scratch files and folders: never data


def _file_kind(mode: int) -> str:
    kinds = [
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISREG, "a regular file"),
    ]
    return next((name for test, name in kinds if test(mode)), "not a regular file")


DIRECTORY, REGULAR = "a directory", "a regular file"


class LocalStorage:
    """Files on this machine, through the operating system (the benchmarked path: no fsspec)."""

    scheme = None

    def join(self, base, *names) -> Path:
        return Path(base).joinpath(*names)

    def lexists(self, path, table: str) -> bool:
        return os.path.lexists(path)

    def kind(self, path, table: str) -> str:
        """ "a directory", "a regular file", or what else it is (a symlink is followed)."""
        return _file_kind(self._stat(path, table).st_mode)

    def children(self, path, table: str) -> list[tuple[str, bool]]:
        """(name, is a directory) of a folder's entries, sorted by name."""
        try:
            with os.scandir(path) as entries:
                return sorted((e.name, e.is_dir()) for e in entries)
        except OSError as exc:
            raise SourceError(table, f"cannot list {path}: {exc.strerror}") from None

    def files(self, folder, table: str, suffix: str = "") -> dict[str, tuple[str, ...]]:
        """Every file under `folder` whose name ends with `suffix` (absolute, so DuckDB never
        resolves a name against its search path or home directory), with its path parts under
        the folder, sorted by name. A FIFO, socket or device among them is refused: reading it
        could block forever."""
        folder = Path(folder)
        found = {}
        for f in sorted(folder.rglob(f"*{suffix}")):
            parts = f.relative_to(folder).parts
            if any(part.startswith(_SKIP) for part in parts):
                continue
            mode = self._stat(f, table).st_mode
            if stat.S_ISDIR(mode):
                continue  # a Spark-style folder named *.parquet: rglob lists its files too
            if not stat.S_ISREG(mode):
                raise SourceError(table, f"{f} is {_file_kind(mode)}, not a regular file")
            found[os.path.abspath(f)] = parts
        return found

    @contextmanager
    def open(self, path, table: str):
        """The file as a binary stream. Opened without blocking and checked on the open
        descriptor, so a FIFO swapped in after the listing is refused instead of waiting
        forever for a writer."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise SourceError(table, f"cannot open {path}: {exc.strerror}") from None
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise SourceError(table, f"{path} is {_file_kind(mode)}, not a regular file")
            os.set_blocking(fd, True)
            fh = os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise
        with fh:
            try:
                yield fh
            except OSError as exc:
                raise SourceError(table, f"cannot read {path}: {exc.strerror or exc}") from None

    def display(self, path) -> str:
        return str(path)

    def duckdb_name(self, path) -> str:
        return str(path)  # files() keys are absolute already

    def attach(self, con) -> None:
        """Nothing to register: DuckDB reads local files itself."""

    @staticmethod
    def _stat(path, table: str) -> os.stat_result:
        try:
            return os.stat(path)
        except OSError as exc:
            raise SourceError(table, f"cannot read {path}: {exc.strerror}") from None


LOCAL = LocalStorage()


class FsspecStorage:
    """Files behind an fsspec filesystem. `scheme` is how the URL named it (for messages);
    `host` the storage account's host when the URL gave one (abfs://container@host/...)."""

    def __init__(
        self,
        fs,
        scheme: str,
        host: str | None = None,
        errors: tuple = (),
        container_names: re.Pattern | None = None,
    ):
        self.fs, self.scheme, self.host = fs, scheme, host
        # what a top-level name must look like to be a container (Azure: 3-63 of a-z 0-9 -);
        # adlfs takes a container it may not query for one that exists
        self.container_names = container_names
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        self.protocol = protocol
        # what a storage client raises besides OSError (azure-core's errors are not OSErrors)
        self.errors = (OSError, *errors)

    def join(self, base, *names) -> str:
        return posixpath.join(base, *names) if base else posixpath.join(*names)

    def lexists(self, path, table: str) -> bool:
        name = self._strip(path).strip("/")
        if (
            self.container_names is not None
            and "/" not in name
            and not self.container_names.fullmatch(name)
        ):
            return False  # AzureActivity.jsonl at an account's root: no container has that name
        with self._failing(table, path, "read"):
            return self.fs.exists(path)

    def kind(self, path, table: str) -> str:
        with self._failing(table, path, "read"):
            kind = self.fs.info(path).get("type")
        return {"directory": DIRECTORY, "file": REGULAR}.get(kind, f"not a regular file ({kind})")

    def children(self, path, table: str) -> list[tuple[str, bool]]:
        with self._failing(table, path, "list"):
            entries = self.fs.ls(path, detail=True)
        base = self._strip(path).rstrip("/")
        out = []
        for info in entries:
            name = self._strip(info["name"]).rstrip("/")
            if name == base:
                continue  # some stores list a folder's own marker
            out.append((posixpath.basename(name), info.get("type") == "directory"))
        return sorted(out)

    def files(self, folder, table: str, suffix: str = "") -> dict[str, tuple[str, ...]]:
        base = self._strip(folder)
        with self._failing(table, folder, "list"):
            listed = self.fs.find(base, detail=True)
        found = {}
        for name, info in sorted(listed.items()):
            name = self._strip(name)
            rel = name[len(base) :].lstrip("/") if name.startswith(base) else name
            parts = tuple(p for p in rel.split("/") if p)
            if not parts or any(part.startswith(_SKIP) for part in parts):
                continue
            if not name.endswith(suffix) or info.get("type") == "directory":
                continue
            if info.get("type") != "file":
                raise SourceError(
                    table, f"{self.display(name)} is not a regular file ({info.get('type')})"
                )
            found[name] = parts
        return found

    @contextmanager
    def open(self, path, table: str):
        with self._failing(table, path, "open"):
            fh = self.fs.open(path, "rb")
        with fh, self._failing(table, path, "read"):
            yield fh

    def display(self, path) -> str:
        """The file's URL for messages: never a credential (those are options, not the path)."""
        path = self._strip(path)
        if self.host:
            container, _, rest = path.partition("/")
            return (
                f"{self.scheme}://{container}@{self.host}/{rest}"
                if container
                else f"{self.scheme}://{self.host}/"
            )
        return f"{self.scheme}://{path}"

    def duckdb_name(self, path) -> str:
        return f"{self.protocol}://{self._strip(path)}"

    def attach(self, con) -> None:
        """DuckDB reads through this filesystem; it never fetches an extension for a path (an
        s3:// or az:// name would otherwise make it download and load one)."""
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
        con.register_filesystem(self.fs)

    def _strip(self, path) -> str:
        return self.fs._strip_protocol(str(path))

    @contextmanager
    def _failing(self, table: str, path, what: str):
        """The storage's own errors as a SourceError naming the table and the file."""
        try:
            yield
        except DetectionError:
            raise
        except FileNotFoundError:
            raise SourceError(table, f"cannot {what} {self.display(path)}: not found") from None
        except self.errors as exc:
            raise SourceError(
                table, f"cannot {what} {self.display(path)}: {_reason(exc)}"
            ) from None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return redact(text[0] if text else type(exc).__name__)
