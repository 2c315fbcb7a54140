"""The alert store's schema: versioned, migrated in place with Alembic (migrations/), as Airflow
migrates its own metadata DB, with a version table of its own (`detection_schema_version`).

Opening a store checks its version with one query: at HEAD, nothing else happens; older (or
unversioned: a store made before versioning), the migrations run in one transaction under a
lock (a PostgreSQL advisory lock; a lock file beside a SQLite file), so two workers opening it
at once migrate it once; newer than this code (a newer release migrated it), it is refused, with
a message, rather than written with assumptions that no longer hold. `alerts` commands, the CLI
and every DAG task open the store this way, so a deployment upgrades its store on first use.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from .errors import UsageError

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "detection_schema_version"
HEAD = "0003"  # the newest revision in migrations/versions (a test holds them equal)
KNOWN = ("0001", "0002", "0003")
LOCK_ID = 0x5E17_0A1E


def current(cur, is_postgres: bool) -> str | None:
    """The store's schema version, or None when it has no version table yet."""
    if is_postgres:
        cur.execute("SELECT to_regclass(%s)", (VERSION_TABLE,))
        if cur.fetchone()[0] is None:
            return None
    else:
        cur.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (VERSION_TABLE,)
        )
        if cur.fetchone() is None:
            return None
    cur.execute(f"SELECT version_num FROM {VERSION_TABLE}")
    row = cur.fetchone()
    return row[0] if row else None


def check(version: str | None, where: str) -> bool:
    """True when the store needs migrating; refuses a store newer than this code."""
    if version is not None and version not in KNOWN:
        raise UsageError(
            f"alert store {where} has schema version {version}, newer than this "
            f"code knows (up to {HEAD}): upgrade the detection code before using it"
        )
    return version != HEAD


def sqlalchemy_url(url: str) -> str:
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    path = url.removeprefix("sqlite:///")
    return f"sqlite:///{Path(path).absolute()}"


@contextlib.contextmanager
def file_lock(url: str):
    """SQLite: one migrating process at a time (Alembic's transaction alone would let a second
    process read the old version and migrate again)."""
    if url.startswith(("postgresql://", "postgres://")):
        yield
        return
    import fcntl

    path = Path(url.removeprefix("sqlite:///")).absolute()
    with open(path.with_name(path.name + ".migrate.lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def upgrade(url: str, revision: str = "head") -> None:
    """Run the migrations up to `revision` (tests make old stores with an older one)."""
    import sqlalchemy
    from alembic import command
    from alembic.config import Config
    from sqlalchemy.pool import NullPool

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    engine = sqlalchemy.create_engine(sqlalchemy_url(url), poolclass=NullPool)
    try:
        with file_lock(url), engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()
