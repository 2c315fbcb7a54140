"""Run history per table, kept in the alert store: the baseline for the volume check."""

from __future__ import annotations

from datetime import datetime, timezone

SCHEMA = """CREATE TABLE IF NOT EXISTS run_history (
    rule_id TEXT NOT NULL, table_name TEXT NOT NULL, window_end TEXT NOT NULL,
    rows_in_window INTEGER NOT NULL, status TEXT NOT NULL, recorded_at TEXT NOT NULL,
    PRIMARY KEY (rule_id, table_name, window_end))"""


def record(store, rule_id: str, table: str, window_end: str, rows: int, status: str) -> None:
    """UPSERT: a re-run of an interval replaces its own entry, never adds a second."""
    with store._tx() as cur:
        cur.execute(SCHEMA)
        cur.execute(store._q(
            "INSERT INTO run_history (rule_id, table_name, window_end, rows_in_window, status, "
            "recorded_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (rule_id, table_name, window_end) "
            "DO UPDATE SET rows_in_window = excluded.rows_in_window, status = excluded.status, "
            "recorded_at = excluded.recorded_at"),
            (rule_id, table, window_end, rows, status,
             datetime.now(timezone.utc).isoformat(timespec="seconds")))


def trailing(store, rule_id: str, table: str, before_end: str, runs: int) -> list[int]:
    """Rows in window of the last `runs` runs that ended before this one (failed runs excluded:
    an outage must not lower the baseline)."""
    with store._tx() as cur:
        cur.execute(SCHEMA)
        cur.execute(store._q(
            "SELECT rows_in_window FROM run_history WHERE rule_id = ? AND table_name = ? "
            "AND window_end < ? AND status != 'failed' ORDER BY window_end DESC LIMIT ?"),
            (rule_id, table, before_end, runs))
        return [row[0] for row in cur.fetchall()]
