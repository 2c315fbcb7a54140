"""What the alerts console filters and sorts on, as indexed columns (the body is JSON text), and
the runs that created or updated each alert.

The new columns are filled from every stored alert's body here, once; store.upsert keeps them
current (store.index_fields is the one definition of each)."""

import json

from alembic import op
from sqlalchemy import text

revision = "0003"
down_revision = "0002"

COLUMNS = ("start_time", "callers", "vms", "subscriptions", "data_quality")


def upgrade() -> None:
    from include.detection.store import index_fields

    for column in COLUMNS:
        op.execute(f"ALTER TABLE alerts ADD COLUMN {column} TEXT")
    op.execute("CREATE INDEX alerts_start_time ON alerts (start_time, id)")
    op.execute("CREATE INDEX alerts_severity ON alerts (severity, start_time)")
    op.execute("""CREATE TABLE alert_runs (
        alert_id TEXT NOT NULL REFERENCES alerts(id), run_id TEXT NOT NULL,
        dag_id TEXT, window_start TEXT NOT NULL, window_end TEXT NOT NULL,
        action TEXT NOT NULL, at TEXT NOT NULL,
        PRIMARY KEY (alert_id, run_id))""")
    op.execute("CREATE INDEX alert_runs_run ON alert_runs (run_id)")
    op.execute("CREATE INDEX alert_runs_window ON alert_runs (window_end)")
    bind = op.get_bind()
    rows = bind.exec_driver_sql("SELECT id, body FROM alerts").fetchall()
    update = text("UPDATE alerts SET " + ", ".join(f"{c} = :{c}" for c in COLUMNS)
                  + " WHERE id = :id")
    for start in range(0, len(rows), 1000):
        batch = [{"id": id_, **index_fields(json.loads(body))}
                 for id_, body in rows[start:start + 1000]]
        if batch:
            bind.execute(update, batch)
