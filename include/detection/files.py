"""Writing files as transactions: a reader sees the old file or the whole new one, never half.

The temporary file is created beside the target (same file system, so the rename is atomic) under
a random dot-name, with O_CREAT | O_EXCL | O_NOFOLLOW (`tempfile.mkstemp`): a name planted in
advance, a symlink included, is never opened, and a predictable name (`.<name>.tmp-<pid>`, as
before) let anyone who can write the folder point our write at another file. The rename replaces
a symlink at the target itself, never the file it points to.

Modes: the temporary file is 0600 while it is written, so nobody reads a half-written file; before
the rename it gets the mode a plain `open()` would have given the file (0666 less the umask),
because the files written here (results, staged Parquet, quality verdicts, tickets) are read by
other processes of the deployment, which may run as another user of the same group. Pass `mode`
for a file only its owner may read.

`atomic_path` yields a path the caller opens again by name; a writer with access to the folder
could swap the temporary file for a symlink in between. That cannot be prevented through a path,
but it is detected: the file renamed into place must still be the regular file we created
(same inode), else nothing is renamed and OSError is raised. `write_text` writes through the
descriptor it created and has no such window (as `write_bytes`).

Files on other file systems (object storage, `memory://`) are written by `storage`, which comes
back here for a folder on this machine.
"""

from __future__ import annotations

import os
import stat
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # elsewhere the only way to read it is to set it
        current = os.umask(0o077)
        os.umask(current)
    return current


def _mode(mode: int | None) -> int:
    return mode if mode is not None else 0o666 & ~_umask()


def _create(path: Path) -> tuple[int, Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    return fd, Path(name)


def _seal(tmp: Path, created: os.stat_result, mode: int | None) -> None:
    """Check that `tmp` is still the regular file we created, then give it its final mode."""
    try:
        fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise OSError(
            f"temporary file {tmp} was replaced while being written "
            f"({exc.strerror}); {tmp.name[1:]} not written"
        ) from None
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (
            created.st_dev,
            created.st_ino,
        ):
            raise OSError(
                f"temporary file {tmp} was replaced while being written; not renamed into place"
            )
        os.fchmod(fd, _mode(mode))
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Path, mode: int | None = None):
    """Yield a new, empty temporary file beside `path` (a dot-name, which scanners skip); on
    success it is renamed onto `path`, on error it is removed."""
    path = Path(path)
    fd, tmp = _create(path)
    try:
        try:
            created = os.fstat(fd)
        finally:
            os.close(fd)
        yield tmp
        _seal(tmp, created, mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str, mode: int | None = None) -> Path:
    """Write `text` (UTF-8) to `path` atomically, through the descriptor of the temporary file."""
    return write_bytes(path, text.encode("utf-8"), mode)


def write_bytes(path: Path, data: bytes, mode: int | None = None) -> Path:
    """Write `data` to `path` atomically, through the descriptor of the temporary file."""
    path = Path(path)
    fd, tmp = _create(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), _mode(mode))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
