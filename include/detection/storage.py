"""Files the pipeline writes and reads back, wherever they live: staging, Data Docs, quality
verdicts, quarantine files and `file` tickets.

A location is text: a plain path (this machine), `file:///path`, or an fsspec URL (`memory://`
in tests, `s3://bucket/prefix`, `abfs://container@account.dfs.core.windows.net/prefix`,
`az://container/prefix`, `gs://bucket/prefix`). Airflow's `ObjectStoragePath` is fsspec
underneath; this library does not import Airflow, so it uses fsspec directly, and the DAG's
tasks hand each other these URLs (in XCom), never a path only their own host can see.

Writes are transactions, a reader sees the old file or the whole new one:
- on this machine (a plain path or file://) through `files` (random O_EXCL|O_NOFOLLOW temp
  name beside the target, then rename; issue #9);
- elsewhere to a random dot-named temp key beside the target, then `fs.mv` onto it: on object
  stores one PUT is atomic anyway, but a writer that fails half way (a Parquet writer closes its
  stream, which commits, even on error) must never leave a truncated file under the real name.

Credentials never go in the URL, because these URLs are logged and travel in XCom: a query
(`?sv=...&sig=...`) or a password in the URL is refused; adlfs, s3fs and gcsfs read theirs from
the environment (AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_ACCOUNT_KEY, a service principal,
DefaultAzureCredential; AWS_*; Google's), and those values are registered with `redact`.
"""

from __future__ import annotations

import os
import secrets
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from . import files
from .errors import UsageError

# scheme -> the package that provides it (None: fsspec itself)
PACKAGES = {
    "memory": None,
    "abfs": "adlfs",
    "abfss": "adlfs",
    "az": "adlfs",
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
}
# Stores with no real folders: makedirs there would create a bucket or container, not a folder.
_FLAT = {"abfs", "abfss", "az", "s3", "s3a", "gs", "gcs"}
_SECRET_ENV = (
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_CLIENT_SECRET",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)


def scheme(url) -> str | None:
    """The URL's scheme in lower case, or None for a plain path (`C:/x` is a drive)."""
    text = os.fspath(url)
    head, sep, _ = text.partition(":")
    if (
        not sep
        or len(head) < 2
        or not head[0].isalpha()
        or not all(c.isalnum() or c in "+.-" for c in head)
    ):
        return None
    return head.lower()


def local_path(url) -> Path | None:
    """The path on this machine a plain path or `file://` URL names; None for anything else."""
    text = os.fspath(url)
    kind = scheme(text)
    if kind is None:
        return Path(text).absolute()
    if kind != "file":
        return None
    parts = urlsplit(text)
    if parts.netloc not in ("", "localhost"):
        raise UsageError(f"{text}: only local files (file:///path)")
    if parts.query or parts.fragment:
        raise UsageError(f"{parts.scheme}://{parts.netloc}{parts.path}: takes no options (?...)")
    return Path(unquote(parts.path) or "/")


def open_dir(url):
    """(fsspec filesystem, its path for `url`) through `fsspec.core.url_to_fs`; a clear
    UsageError for a scheme whose package is missing or a URL carrying credentials."""
    from fsspec.core import url_to_fs

    from .connections import register_secret, register_url

    text = os.fspath(url)
    local = local_path(text)
    if local is not None:
        from fsspec.implementations.local import LocalFileSystem

        return LocalFileSystem(), local.as_posix()
    kind = scheme(text)
    try:
        parts = urlsplit(text)
    except ValueError:
        raise UsageError(f"{kind}://...: not a URL") from None
    user, at, host = parts.netloc.rpartition("@")
    shown = f"{kind}://{'***@' if ':' in user else user + at}{host}{parts.path}"
    if ":" in user or parts.query:
        register_url(text)
        # these URLs are logged and passed between tasks (XCom): never a secret in them
        raise UsageError(
            f"{shown}: no password or query (?...) in a storage URL; the storage "
            "client reads credentials from the environment (e.g. "
            "AZURE_STORAGE_SAS_TOKEN, AWS_SECRET_ACCESS_KEY)"
        )
    for name in _SECRET_ENV:
        register_secret(os.environ.get(name))
    try:
        return url_to_fs(text)
    except ImportError:
        package = PACKAGES.get(kind) or f"the fsspec implementation of {kind}://"
        raise UsageError(f"{kind}://...: needs {package} (pip install {package})") from None
    except ValueError as exc:  # fsspec: "Protocol not known"
        raise UsageError(f"{kind}://...: {exc}") from None


def join(url, *names: str) -> str:
    """`url` with `names` appended as path segments, in the same form (path or URL); a name
    never replaces the base (a leading `/` is dropped, not taken as a root)."""
    text = os.fspath(url)
    names = tuple(n.strip("/") for n in names)
    if scheme(text) is None:
        return os.path.join(text, *names)
    return (text if text.endswith("/") else text + "/") + "/".join(names)


def write_bytes(url, data: bytes, mode: int | None = None) -> str:
    """Write `data` to `url` atomically; returns `url` as text."""
    local = local_path(url)
    if local is not None:
        files.write_bytes(local, data, mode)
    else:
        with writing(url) as (fs, path):
            fs.pipe_file(path, data)
    return os.fspath(url)


def write_text(url, text: str, mode: int | None = None) -> str:
    return write_bytes(url, text.encode("utf-8"), mode)


@contextmanager
def writing(url):
    """Yield (fs, path) to write the whole file to; it appears under `url` only on success.
    Mode: as `files` gives it for a local file, the store's for the others."""
    local = local_path(url)
    if local is not None:
        from fsspec.implementations.local import LocalFileSystem

        with files.atomic_path(local) as tmp:
            yield LocalFileSystem(), tmp.as_posix()
        return
    fs, path = open_dir(url)
    name = PurePosixPath(path)
    tmp = str(name.with_name(f".{name.name}.{secrets.token_hex(8)}.tmp"))
    if _protocol(fs) not in _FLAT:
        fs.makedirs(str(name.parent), exist_ok=True)
    try:
        yield fs, tmp
        fs.mv(tmp, path)
    except BaseException:
        if _exists(fs, tmp):
            fs.rm_file(tmp)
        raise


def read_bytes(url) -> bytes:
    """The file's bytes; FileNotFoundError when there is none (a folder is not a file)."""
    local = local_path(url)
    try:
        if local is not None:
            return local.read_bytes()
        fs, path = open_dir(url)
        return fs.cat_file(path)
    except IsADirectoryError:
        raise FileNotFoundError(os.fspath(url)) from None


def read_text(url) -> str:
    return read_bytes(url).decode("utf-8")


def is_file(url) -> bool:
    """Whether `url` is a file; on this machine a regular file that is not a symlink (the
    writers here replace a symlink, they never write through one)."""
    local = local_path(url)
    if local is not None:
        return local.is_file() and not local.is_symlink()
    fs, path = open_dir(url)
    return fs.isfile(path)


def exists(url) -> bool:
    local = local_path(url)
    if local is not None:
        return local.exists() or local.is_symlink()
    fs, path = open_dir(url)
    return _exists(fs, path)


def rm(url, missing_ok: bool = True) -> None:
    """Remove one file (a symlink itself, never its target)."""
    local = local_path(url)
    if local is not None:
        local.unlink(missing_ok=missing_ok)
        return
    fs, path = open_dir(url)
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        if not missing_ok:
            raise


def walk(url) -> list[str]:
    """The files under the folder `url`, as paths relative to it with `/` (none if absent).
    Symlinks on this machine are listed, never followed."""
    local = local_path(url)
    if local is not None:
        out = []
        for folder, dirs, names in os.walk(local):
            rel = Path(folder).relative_to(local)
            out += [(rel / n).as_posix() for n in names]
            out += [(rel / d).as_posix() for d in dirs if (Path(folder) / d).is_symlink()]
        return sorted(out)
    fs, path = open_dir(url)
    if not fs.isdir(path):
        return []
    root = path.rstrip("/") + "/"
    return sorted(f[len(root) :] for f in fs.find(path) if f.startswith(root))


def subfolders(url) -> list[str]:
    """The names of the folders directly in the folder `url` (none if absent); symlinks on this
    machine are not folders here."""
    local = local_path(url)
    if local is not None:
        if not local.is_dir():
            return []
        return sorted(p.name for p in local.iterdir() if p.is_dir() and not p.is_symlink())
    fs, path = open_dir(url)
    if not fs.isdir(path):
        return []
    return sorted(
        e["name"].rstrip("/").rsplit("/", 1)[-1]
        for e in fs.ls(path, detail=True)
        if e.get("type") == "directory"
    )


def put_tree(local: Path, url) -> list[str]:
    """Copy the folder `local` to the folder `url`, each file atomically, then remove what the
    target held that `local` does not (an older rendering), so readers never see a half tree
    disappear. Returns the files copied (relative paths)."""
    copied = []
    for folder, _, names in os.walk(local):
        for name in names:
            source = Path(folder) / name
            rel = source.relative_to(local).as_posix()
            write_bytes(join(url, *rel.split("/")), source.read_bytes())
            copied.append(rel)
    for stale in set(walk(url)) - set(copied):
        rm(join(url, *stale.split("/")))
    return sorted(copied)


def write_parquet(table, url) -> str:
    """A pyarrow Table as Parquet at `url`, atomically (pyarrow writes through the fsspec
    filesystem; a local file through `files`)."""
    import pyarrow.parquet as pq

    with writing(url) as (fs, path):
        if local_path(url) is not None:
            pq.write_table(table, path)
        else:
            pq.write_table(table, path, filesystem=fs)
    return os.fspath(url)


def read_parquet(url):
    import pyarrow.parquet as pq

    local = local_path(url)
    if local is not None:
        return pq.read_table(local)
    fs, path = open_dir(url)
    if not fs.isfile(path):
        raise FileNotFoundError(os.fspath(url))
    return pq.read_table(path, filesystem=fs)


def _protocol(fs) -> str:
    protocol = fs.protocol
    return (protocol if isinstance(protocol, str) else protocol[0]).lower()


def _exists(fs, path: str) -> bool:
    try:
        return fs.exists(path)
    except FileNotFoundError:
        return False
