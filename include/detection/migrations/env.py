"""Alembic environment of the alert store: always called by schema.upgrade with a connection, in
one transaction, under a lock, with the store's own version table (Airflow's metadata DB may be
the same PostgreSQL database: its `alembic_version` is not ours)."""

from alembic import context

from include.detection.schema import LOCK_ID, VERSION_TABLE

connection = context.config.attributes["connection"]
context.configure(
    connection=connection, version_table=VERSION_TABLE, transaction_per_migration=False
)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        # Two workers opening a new store at once: the second waits, then finds it migrated.
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOCK_ID})")
    context.run_migrations()
