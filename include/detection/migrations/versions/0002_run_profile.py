"""Rows per hour of each run's window, empty hours included, and its newest row: the table's
rhythm, against which the completeness checks judge an empty hour (quality.usual_hours)."""

from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.execute("""CREATE TABLE IF NOT EXISTS run_profile (
        rule_id TEXT NOT NULL, table_name TEXT NOT NULL, window_end TEXT NOT NULL,
        hourly TEXT NOT NULL, newest TEXT, status TEXT NOT NULL, recorded_at TEXT NOT NULL,
        PRIMARY KEY (rule_id, table_name, window_end))""")
