"""What the alerts console filters and sorts on, in a narrow table of its own (`alert_index`:
the alert's revision, severity, start time, callers, VMs, subscriptions, data quality), and the
runs that created or updated each alert.

Narrow on purpose: `alerts` rows carry the JSON body (kilobytes each), so a filter or a count
over `alerts` reads every body; over `alert_index` it reads ~100 bytes a row (measured at
100,000 alerts in `python -m bench.console`). The rows are filled from every stored alert's body
here, once; store.upsert keeps them current in the same transaction (store.index_fields is the
one definition of each column)."""

import json

from alembic import op
from sqlalchemy import text

revision = "0003"
down_revision = "0002"

COLUMNS = ("start_time", "callers", "vms", "subscriptions", "data_quality")


def upgrade() -> None:
    from include.detection.store import index_fields

    op.execute("""CREATE TABLE alert_index (
        id TEXT PRIMARY KEY REFERENCES alerts(id), revision INTEGER NOT NULL,
        severity TEXT NOT NULL, start_time TEXT, callers TEXT, vms TEXT, subscriptions TEXT,
        data_quality TEXT)""")
    op.execute("CREATE INDEX alert_index_start ON alert_index (start_time, id)")
    op.execute("""CREATE TABLE alert_runs (
        alert_id TEXT NOT NULL REFERENCES alerts(id), run_id TEXT NOT NULL,
        dag_id TEXT, window_start TEXT NOT NULL, window_end TEXT NOT NULL,
        action TEXT NOT NULL, at TEXT NOT NULL,
        PRIMARY KEY (alert_id, run_id))""")
    op.execute("CREATE INDEX alert_runs_run ON alert_runs (run_id)")
    bind = op.get_bind()
    rows = bind.exec_driver_sql("SELECT id, revision, severity, body FROM alerts").fetchall()
    insert = text(
        "INSERT INTO alert_index (id, revision, severity, "
        + ", ".join(COLUMNS)
        + ") VALUES (:id, :revision, :severity, "
        + ", ".join(f":{c}" for c in COLUMNS)
        + ")"
    )
    for start in range(0, len(rows), 1000):
        batch = [
            {"id": id_, "revision": rev, "severity": severity, **index_fields(json.loads(body))}
            for id_, rev, severity, body in rows[start : start + 1000]
        ]
        if batch:
            bind.execute(insert, batch)
