"""The alert store and delivery outbox (SQLite by default; PostgreSQL for a `postgresql://` URL).

Alerts are UPSERTed by id; deliveries record, per destination, which revision of an alert was
delivered and the ticket reference. "Pending" means not yet delivered at its current revision,
so a destination that was down gets everything on the next attempt, and nothing twice.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from .alerts import fingerprint, merge_evidence

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS alerts (
        id TEXT PRIMARY KEY, rule_id TEXT NOT NULL, severity TEXT NOT NULL, title TEXT NOT NULL,
        first_seen TEXT NOT NULL, last_seen TEXT NOT NULL, revision INTEGER NOT NULL,
        fingerprint TEXT NOT NULL, body TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS deliveries (
        alert_id TEXT NOT NULL REFERENCES alerts(id), destination TEXT NOT NULL,
        ticket_ref TEXT, revision INTEGER NOT NULL, delivered_at TEXT NOT NULL,
        PRIMARY KEY (alert_id, destination))""",
    """CREATE TABLE IF NOT EXISTS delivery_errors (
        alert_id TEXT NOT NULL, destination TEXT NOT NULL, error TEXT NOT NULL,
        failed_at TEXT NOT NULL, PRIMARY KEY (alert_id, destination))""",
]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class AlertStore:
    def __init__(self, url: str):
        self.url = url
        self.is_postgres = url.startswith(("postgresql://", "postgres://"))
        if self.is_postgres:
            import psycopg
            self._conn = psycopg.connect(url, autocommit=False)
            self._mark = "%s"
        else:
            path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(path, timeout=30, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._mark = "?"
        with self._tx() as cur:
            for stmt in SCHEMA:
                cur.execute(stmt)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextmanager
    def _tx(self):
        cur = self._conn.cursor()
        if self.is_postgres:
            try:
                yield cur
                self._conn.commit()
            except BaseException:
                self._conn.rollback()
                raise
        else:
            cur.execute("BEGIN IMMEDIATE")  # one writer at a time: read-merge-write is atomic
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def _q(self, sql: str) -> str:
        return sql.replace("?", self._mark)

    # --- alerts ---------------------------------------------------------------------------

    def upsert(self, alerts: list[dict]) -> dict:
        """Insert new alerts, merge evidence into known ones; returns counts by outcome."""
        counts = {"new": 0, "updated": 0, "unchanged": 0}
        now = _now()
        with self._tx() as cur:
            for alert in alerts:
                cur.execute(self._q("SELECT body, revision FROM alerts WHERE id = ?"), (alert["id"],))
                row = cur.fetchone()
                if row is None:
                    body, revision, outcome = dict(alert), 1, "new"
                else:
                    old = json.loads(row[0])
                    body = {**old, "evidence": merge_evidence(old["evidence"], alert["evidence"]),
                            "data_quality": alert["data_quality"], "window": alert["window"]}
                    body["fingerprint"] = fingerprint(body["evidence"])
                    changed = body["fingerprint"] != old["fingerprint"]
                    revision = row[1] + 1 if changed else row[1]
                    outcome = "updated" if changed else "unchanged"
                body["revision"] = revision
                cur.execute(self._q(
                    "INSERT INTO alerts (id, rule_id, severity, title, first_seen, last_seen, "
                    "revision, fingerprint, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen, "
                    "revision = excluded.revision, fingerprint = excluded.fingerprint, "
                    "body = excluded.body"),
                    (alert["id"], alert["rule_id"], alert["severity"], alert["title"], now, now,
                     revision, body["fingerprint"], json.dumps(body, ensure_ascii=False)))
                counts[outcome] += 1
        return counts

    def alerts(self) -> list[dict]:
        cur = self._conn.cursor()
        cur.execute("SELECT body, first_seen, last_seen FROM alerts ORDER BY first_seen, id")
        rows = cur.fetchall()
        tickets = self._tickets()
        if self.is_postgres:
            self._conn.commit()
        return [{**json.loads(b), "first_seen": f, "last_seen": l,
                 "tickets": tickets.get(json.loads(b)["id"], [])} for b, f, l in rows]

    def get(self, alert_id: str) -> dict | None:
        return next((a for a in self.alerts() if a["id"] == alert_id), None)

    def _tickets(self) -> dict[str, list[dict]]:
        cur = self._conn.cursor()
        cur.execute("SELECT alert_id, destination, ticket_ref, revision, delivered_at "
                    "FROM deliveries ORDER BY destination")
        out: dict[str, list[dict]] = {}
        for alert_id, dest, ref, rev, at in cur.fetchall():
            out.setdefault(alert_id, []).append(
                {"destination": dest, "ticket": ref, "revision": rev, "delivered_at": at})
        return out

    # --- outbox -----------------------------------------------------------------------------

    def pending(self, destination: str) -> list[tuple[dict, str | None]]:
        """Alerts not delivered to `destination` at their current revision, with the ticket
        reference of an earlier delivery (an update, not a new ticket)."""
        cur = self._conn.cursor()
        cur.execute(self._q(
            "SELECT a.body, d.ticket_ref FROM alerts a LEFT JOIN deliveries d "
            "ON d.alert_id = a.id AND d.destination = ? "
            "WHERE d.alert_id IS NULL OR d.revision < a.revision ORDER BY a.first_seen, a.id"),
            (destination,))
        rows = cur.fetchall()
        if self.is_postgres:
            self._conn.commit()
        return [(json.loads(body), ref) for body, ref in rows]

    def mark_delivered(self, alert_id: str, destination: str, ticket_ref: str, revision: int) -> None:
        with self._tx() as cur:
            cur.execute(self._q(
                "INSERT INTO deliveries (alert_id, destination, ticket_ref, revision, delivered_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (alert_id, destination) DO UPDATE SET "
                "ticket_ref = excluded.ticket_ref, revision = excluded.revision, "
                "delivered_at = excluded.delivered_at"),
                (alert_id, destination, ticket_ref, revision, _now()))
            cur.execute(self._q("DELETE FROM delivery_errors WHERE alert_id = ? AND destination = ?"),
                        (alert_id, destination))

    def mark_failed(self, alert_id: str, destination: str, error: str) -> None:
        with self._tx() as cur:
            cur.execute(self._q(
                "INSERT INTO delivery_errors (alert_id, destination, error, failed_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (alert_id, destination) DO UPDATE SET "
                "error = excluded.error, failed_at = excluded.failed_at"),
                (alert_id, destination, error[:2000], _now()))


def open_store(url: str | None = None) -> AlertStore:
    from . import config
    return AlertStore(url or config.alert_store())
