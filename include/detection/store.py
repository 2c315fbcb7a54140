"""The alert store and delivery outbox (SQLite by default; PostgreSQL for a `postgresql://` URL).

Tables (created and migrated by schema.py / migrations/, versioned in `detection_schema_version`):
- `alerts`: one row per alert id; the body is the alert JSON, `revision` grows when new evidence
  changes it (`alerts.merge_alert`); the columns the console filters on (index_fields);
- `alert_deliveries`: one row per (alert, destination): the revision delivered there (0 = never),
  when, the ticket reference, failed attempts and the last (redacted) error, and a claim
  (`claimed_by`, `claimed_until`) held by the worker that is delivering it right now;
- `delivery_log`: every successful delivery (created / updated), for the audit trail;
- `alert_runs`: the runs that created, updated or saw each alert;
- `run_history`, `run_profile`: rows and hourly profile per table and window (quality gate).

"Pending" for a destination means not delivered there at the alert's current revision, so a
destination that was down gets everything on the next attempt, and nothing twice.

Concurrency. Two processes may upsert and deliver at once:
- upsert inserts with `ON CONFLICT DO NOTHING` and merges under a row lock (`SELECT ... FOR
  UPDATE` on PostgreSQL; on SQLite every write transaction is `BEGIN IMMEDIATE`, one writer at a
  time), so concurrent merges of the same alert never lose evidence;
- a worker delivers an alert only after claiming it in a short transaction (`SELECT ... FOR
  UPDATE SKIP LOCKED` on PostgreSQL, `BEGIN IMMEDIATE` on SQLite) that sets `claimed_by` and a
  lease `claimed_until`, which the worker's heartbeat renews while it lives (destinations.
  claim_lease). Another worker skips a claimed alert and waits for the claim to end; a worker
  that died loses its claim one lease after its last beat.
"""

from __future__ import annotations

import json
import re
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from . import schema
from .alerts import fingerprint, merge_alert
from .connections import redact, resolve_store
from .errors import UsageError

# Alerts not delivered to a destination (the parameter) at their current revision, oldest first.
_PENDING = (
    "FROM alerts a LEFT JOIN alert_deliveries d ON d.alert_id = a.id AND d.destination = ? "
    "WHERE d.alert_id IS NULL OR d.revision < a.revision ORDER BY a.first_seen, a.id"
)


# A lone UTF-16 surrogate cannot be encoded as UTF-8 (neither SQLite nor PostgreSQL takes it), and
# PostgreSQL text cannot hold NUL: one such character in one caller name would roll back the
# whole window's upsert. Both are stored as U+FFFD on both dialects (JSON bodies keep NUL escaped
# as \u0000, which both accept), so one crafted row never silences the other alerts.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _text(value):
    """A value as both stores can hold it (see _UNSTORABLE); non-strings unchanged."""
    return _UNSTORABLE.sub("\ufffd", value) if isinstance(value, str) else value


def _json(value) -> str:
    return _text(json.dumps(value, ensure_ascii=False))


def _storable(alert: dict) -> dict:
    """The alert as it will read back (see _UNSTORABLE), its fingerprint over that evidence, so a
    re-run of the same window compares equal and changes nothing."""
    clean = json.loads(_json(alert))
    if clean != alert:
        clean["fingerprint"] = fingerprint(clean.get("evidence", []))
    return clean


def index_fields(alert: dict) -> dict:
    """What the console filters and sorts on, as columns (see migrations 0003): callers, VM names
    and subscriptions lower-cased, one per line, for a case-insensitive substring match."""
    details = alert.get("custom_details") or {}

    def joined(values) -> str:
        seen = dict.fromkeys(str(v).lower() for v in values if v not in (None, ""))
        return "\n".join(seen)

    return {
        "start_time": alert.get("start_time"),
        "callers": joined(
            [alert.get("caller")] + [r.get("Caller") for r in alert.get("evidence", [])]
        ),
        "vms": joined(details.get("VirtualMachine") or []),
        "subscriptions": joined(details.get("Subscription") or []),
        "data_quality": alert.get("data_quality"),
    }


def _like(text: str) -> str:
    """A user's search text as a LIKE pattern matching it literally (escape character `!`)."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(ts: datetime) -> str:
    return ts.isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Claim:
    """An alert a worker holds for one destination: deliver `alert` (at `revision`), updating
    `ticket_ref` if a ticket exists already."""

    alert: dict
    ticket_ref: str | None
    revision: int
    fingerprint: str


class AlertStore:
    def __init__(self, url: str):
        self.url = url
        self.is_postgres = url.startswith(("postgresql://", "postgres://"))
        if self.is_postgres:
            import psycopg

            try:
                self._conn = psycopg.connect(url, autocommit=False, connect_timeout=10)
            except psycopg.OperationalError as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise UsageError(
                    f"alert store {redact(url)}: cannot connect ({redact(first)})"
                ) from None
            self._mark = "%s"
        else:
            path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(path, timeout=30, isolation_level=None)
            # Switching a new file to WAL fails at once (no busy wait) while another process
            # writes to it: two workers creating the store together take turns.
            with schema.file_lock(url):
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._mark = "?"
        self._migrate()

    # --- plumbing ------------------------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @contextmanager
    def _tx(self, write: bool = True):
        cur = self._conn.cursor()
        if self.is_postgres:
            try:
                yield cur
                self._conn.commit()
            except BaseException:
                self._conn.rollback()
                raise
        else:
            # BEGIN IMMEDIATE: one writer at a time, so read-merge-write and claims are atomic.
            cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def _q(self, sql: str) -> str:
        return sql.replace("?", self._mark)

    def _lock(self, sql: str, skip_locked: bool = False) -> str:
        """Append a row lock on PostgreSQL (SQLite's BEGIN IMMEDIATE already excludes writers)."""
        if not self.is_postgres:
            return sql
        return sql + (" FOR UPDATE OF d SKIP LOCKED" if skip_locked else " FOR UPDATE")

    def _migrate(self) -> None:
        """Bring the store's schema to this code's version (schema.py); one query when it is."""
        with self._tx(write=False) as cur:
            version = schema.current(cur, self.is_postgres)
        if schema.check(version, redact(self.url)):
            schema.upgrade(self.url)

    # --- alerts --------------------------------------------------------------------------------

    def upsert(self, alerts: list[dict], run: dict | None = None) -> dict:
        """Insert new alerts, merge evidence into known ones; returns counts by outcome.

        `run` ({"run_id", "dag_id", "window_start", "window_end"}) is recorded against each
        alert (created / updated / unchanged), for the console's "runs behind this alert"."""
        counts = {"new": 0, "updated": 0, "unchanged": 0}
        now = _iso(_now())
        with self._tx() as cur:
            for alert in sorted(map(_storable, alerts), key=lambda a: a["id"]):  # one lock order
                body = {**alert, "revision": 1}
                cur.execute(
                    self._q(
                        "INSERT INTO alerts (id, rule_id, severity, title, first_seen, last_seen, "
                        "revision, fingerprint, body) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?) "
                        "ON CONFLICT (id) DO NOTHING RETURNING id"
                    ),
                    (
                        _text(alert["id"]),
                        alert["rule_id"],
                        _text(alert["severity"]),
                        _text(alert["title"]),
                        now,
                        now,
                        alert["fingerprint"],
                        _json(body),
                    ),
                )
                if cur.fetchone() is not None:
                    counts["new"] += 1
                    self._index(cur, alert, 1)
                    self._record_alert_run(cur, alert["id"], run, "created", now)
                    continue
                cur.execute(
                    self._lock(self._q("SELECT body, revision FROM alerts WHERE id = ?")),
                    (_text(alert["id"]),),
                )
                old_body, revision = cur.fetchone()
                merged, changed = merge_alert(json.loads(old_body), alert)
                if changed:
                    merged["revision"] = revision + 1
                    cur.execute(
                        self._q(
                            "UPDATE alerts SET last_seen = ?, revision = ?, fingerprint = ?, "
                            "severity = ?, title = ?, body = ? WHERE id = ?"
                        ),
                        (
                            now,
                            revision + 1,
                            merged["fingerprint"],
                            _text(merged["severity"]),
                            _text(merged["title"]),
                            _json(merged),
                            _text(alert["id"]),
                        ),
                    )
                    self._index(cur, merged, revision + 1)
                    counts["updated"] += 1
                    self._record_alert_run(cur, alert["id"], run, "updated", now)
                else:
                    cur.execute(
                        self._q("UPDATE alerts SET last_seen = ? WHERE id = ?"),
                        (now, _text(alert["id"])),
                    )
                    counts["unchanged"] += 1
                    self._record_alert_run(cur, alert["id"], run, "unchanged", now)
        return counts

    def _index(self, cur, alert: dict, revision: int) -> None:
        """The alert's row in `alert_index`, current with `alerts` (same transaction)."""
        fields = {"revision": revision, "severity": alert["severity"], **index_fields(alert)}
        cur.execute(
            self._q(
                f"INSERT INTO alert_index (id, {', '.join(fields)}) VALUES "
                f"(?{', ?' * len(fields)}) "
                "ON CONFLICT (id) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in fields)
            ),
            (_text(alert["id"]), *map(_text, fields.values())),
        )

    def _record_alert_run(self, cur, alert_id: str, run: dict | None, action: str, now: str):
        if not run:
            return
        # A retry of the run that created the alert finds it unchanged: it stays "created".
        cur.execute(
            self._q(
                "INSERT INTO alert_runs (alert_id, run_id, dag_id, window_start, window_end, "
                "action, "
                "at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (alert_id, run_id) DO UPDATE SET "
                "action = CASE WHEN excluded.action = 'unchanged' THEN alert_runs.action "
                "ELSE excluded.action END, at = CASE WHEN excluded.action = 'unchanged' "
                "THEN alert_runs.at ELSE excluded.at END"
            ),
            (
                _text(alert_id),
                _text(run["run_id"]),
                _text(run.get("dag_id")),
                run["window_start"],
                run["window_end"],
                action,
                now,
            ),
        )

    def alert_runs(self, alert_id: str) -> list[dict]:
        """The runs that created, updated or saw an alert again, oldest first."""
        with self._tx(write=False) as cur:
            cur.execute(
                self._q(
                    "SELECT run_id, dag_id, window_start, window_end, action, at "
                    "FROM alert_runs WHERE alert_id = ? ORDER BY at, run_id"
                ),
                (alert_id,),
            )
            keys = ("run_id", "dag_id", "window_start", "window_end", "action", "at")
            return [dict(zip(keys, row)) for row in cur.fetchall()]

    def search(
        self,
        filters: dict | None = None,
        limit: int = 50,
        offset: int = 0,
        destinations: list[str] | None = None,
    ) -> tuple[int, list[dict]]:
        """One page of alerts matching `filters`, newest first, and how many match in all.

        Filters (all optional, combined with AND): `user`, `vm`, `subscription` (case-insensitive
        substring of any of the alert's callers / VM names / subscriptions), `severity`,
        `data_quality` (exact), `since` / `until` (on the start time, ISO 8601, until exclusive),
        `ticket` (delivered: every destination in `destinations` has the current revision;
        failing: some destination's last attempt failed; pending: neither), `run_id` (the alerts
        that run created, updated or saw)."""
        where, args = self._filters(filters or {}, destinations or [])
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._tx(write=False) as cur:
            # Filter, count and page on the narrow index; read the bodies of one page only.
            cur.execute(self._q(f"SELECT count(*) FROM alert_index a {clause}"), args)
            total = cur.fetchone()[0]
            cur.execute(
                self._q(
                    f"SELECT a.id FROM alert_index a {clause} "
                    "ORDER BY a.start_time DESC, a.id DESC LIMIT ? OFFSET ?"
                ),
                (*args, limit, offset),
            )
            ids = [r[0] for r in cur.fetchall()]
            rows = []
            if ids:
                cur.execute(
                    self._q(
                        "SELECT id, body, first_seen, last_seen, revision FROM alerts "
                        f"WHERE id IN ({', '.join('?' for _ in ids)})"
                    ),
                    ids,
                )
                found = {r[0]: r for r in cur.fetchall()}
                rows = [found[i] for i in ids if i in found]
            deliveries = self._deliveries(cur, ids)
        return total, self._assemble(rows, deliveries, destinations)

    def _filters(self, f: dict, destinations: list[str]) -> tuple[list[str], list]:
        where: list[str] = []
        args: list = []
        for key, column in (("user", "callers"), ("vm", "vms"), ("subscription", "subscriptions")):
            if f.get(key):
                where.append(f"a.{column} LIKE ? ESCAPE '!'")
                args.append("%" + _like(str(f[key]).lower()) + "%")
        for key, column in (("severity", "severity"), ("data_quality", "data_quality")):
            if f.get(key):
                where.append(f"a.{column} = ?")
                args.append(f[key])
        if f.get("since"):
            where.append("a.start_time >= ?")
            args.append(f["since"])
        if f.get("until"):
            where.append("a.start_time < ?")
            args.append(f["until"])
        if f.get("run_id"):
            where.append(
                "EXISTS (SELECT 1 FROM alert_runs r WHERE r.alert_id = a.id AND r.run_id = ?)"
            )
            args.append(f["run_id"])
        failing = (
            "EXISTS (SELECT 1 FROM alert_deliveries d WHERE d.alert_id = a.id "
            "AND d.revision < a.revision AND d.last_error IS NOT NULL)"
        )
        current = (
            "EXISTS (SELECT 1 FROM alert_deliveries d WHERE d.alert_id = a.id "
            "AND d.destination = ? AND d.revision >= a.revision)"
        )
        delivered = " AND ".join([current] * len(destinations)) or "1 = 1"
        if f.get("ticket") == "failing":
            where.append(failing)
        elif f.get("ticket") == "delivered":
            where.append(f"({delivered})")
            args.extend(destinations)
        elif f.get("ticket") == "pending":
            where.append(f"NOT ({delivered}) AND NOT {failing}")
            args.extend(destinations)
        return where, args

    def _deliveries(self, cur, ids: list[str]) -> dict[str, list[tuple]]:
        if not ids:
            return {}
        marks = ", ".join("?" for _ in ids)
        cur.execute(
            self._q(
                "SELECT alert_id, destination, ticket_ref, revision, delivered_at, attempts, "
                f"last_error, last_attempt_at FROM alert_deliveries WHERE alert_id IN ({marks}) "
                "ORDER BY destination"
            ),
            ids,
        )
        out: dict[str, list[tuple]] = {}
        for row in cur.fetchall():
            out.setdefault(row[0], []).append(row[1:])
        return out

    def alerts(
        self, destinations: list[str] | None = None, alert_id: str | None = None
    ) -> list[dict]:
        """Stored alerts with their tickets (delivered: destination, ticket reference, revision,
        when) and the destinations still pending (`destinations` adds configured ones that have
        never been tried)."""
        where, args = ("WHERE id = ?", (alert_id,)) if alert_id else ("", ())
        with self._tx(write=False) as cur:
            cur.execute(
                self._q(
                    f"SELECT id, body, first_seen, last_seen, revision FROM alerts {where} "
                    "ORDER BY first_seen, id"
                ),
                args,
            )
            rows = cur.fetchall()
            where_d = "WHERE alert_id = ?" if alert_id else ""
            cur.execute(
                self._q(
                    "SELECT alert_id, destination, ticket_ref, revision, delivered_at, attempts, "
                    f"last_error, last_attempt_at FROM alert_deliveries {where_d} ORDER BY "
                    "destination"
                ),
                args,
            )
            deliveries: dict[str, list[tuple]] = {}
            for row in cur.fetchall():
                deliveries.setdefault(row[0], []).append(row[1:])
        return self._assemble(rows, deliveries, destinations)

    @staticmethod
    def _assemble(rows, deliveries: dict, destinations: list[str] | None) -> list[dict]:
        out = []
        for id_, body, first_seen, last_seen, revision in rows:
            alert = {
                **json.loads(body),
                "revision": revision,
                "first_seen": first_seen,
                "last_seen": last_seen,
            }
            tickets, pending, errors = [], [], []
            known = set()
            for dest, ref, rev, at, attempts, error, attempt_at in deliveries.get(id_, []):
                known.add(dest)
                if rev > 0:
                    tickets.append(
                        {
                            "destination": dest,
                            "ticket": ref,
                            "revision": rev,
                            "delivered_at": at,
                            "current": rev >= revision,
                        }
                    )
                if rev < revision:
                    pending.append(dest)
                if error:
                    errors.append(
                        {
                            "destination": dest,
                            "error": error,
                            "attempts": attempts,
                            "failed_at": attempt_at,
                        }
                    )
            pending += [d for d in destinations or [] if d not in known]
            out.append(
                {
                    **alert,
                    "tickets": tickets,
                    "pending": sorted(set(pending)),
                    **({"delivery_errors": errors} if errors else {}),
                }
            )
        return out

    def get(self, alert_id: str, destinations: list[str] | None = None) -> dict | None:
        found = self.alerts(destinations, alert_id=alert_id)
        return found[0] if found else None

    # --- outbox --------------------------------------------------------------------------------

    def pending_ids(self, destination: str, alert_ids: list[str] | None = None) -> list[str]:
        """Ids of alerts not delivered to `destination` at their current revision (claimed or
        not), oldest first."""
        with self._tx(write=False) as cur:
            cur.execute(self._q(f"SELECT a.id {_PENDING}"), (destination,))
            ids = [r[0] for r in cur.fetchall()]
        if alert_ids is None:
            return ids
        wanted = set(alert_ids)
        return [i for i in ids if i in wanted]

    def pending(self, destination: str) -> list[tuple[dict, str | None]]:
        """Pending alerts for `destination`, each with the ticket reference of an earlier delivery
        (an update, not a new ticket)."""
        with self._tx(write=False) as cur:
            cur.execute(
                self._q(f"SELECT a.body, a.revision, d.ticket_ref {_PENDING}"), (destination,)
            )
            rows = cur.fetchall()
        return [({**json.loads(body), "revision": rev}, ref) for body, rev, ref in rows]

    def _ensure_row(self, cur, alert_id: str, destination: str) -> None:
        cur.execute(
            self._q(
                "INSERT INTO alert_deliveries (alert_id, destination) VALUES (?, ?) "
                "ON CONFLICT (alert_id, destination) DO NOTHING"
            ),
            (alert_id, destination),
        )

    def claim(
        self, alert_id: str, destination: str, owner: str, lease_seconds: float
    ) -> Claim | None:
        """Claim a pending alert for delivery to `destination`, or None if it is not pending
        (any more) or another live worker holds it."""
        now = _now()
        with self._tx() as cur:
            self._ensure_row(cur, alert_id, destination)
            cur.execute(
                self._lock(
                    self._q(
                        "SELECT a.body, a.revision, a.fingerprint, d.ticket_ref "
                        "FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id "
                        "WHERE d.alert_id = ? AND d.destination = ? AND d.revision < a.revision "
                        "AND (d.claimed_until IS NULL OR d.claimed_until < ?)"
                    ),
                    skip_locked=True,
                ),
                (alert_id, destination, _iso(now)),
            )
            row = cur.fetchone()
            if row is None:
                return None
            cur.execute(
                self._q(
                    "UPDATE alert_deliveries SET claimed_by = ?, claimed_until = ? "
                    "WHERE alert_id = ? AND destination = ?"
                ),
                (owner, _iso(now + timedelta(seconds=lease_seconds)), alert_id, destination),
            )
        body, revision, digest, ref = row
        return Claim({**json.loads(body), "revision": revision}, ref, revision, digest)

    def _release(self, owner: str | None) -> tuple[str, tuple]:
        if owner is None:
            return "claimed_by = NULL, claimed_until = NULL", ()
        return (
            "claimed_until = CASE WHEN claimed_by = ? THEN NULL ELSE claimed_until END, "
            "claimed_by = CASE WHEN claimed_by = ? THEN NULL ELSE claimed_by END",
            (owner, owner),
        )

    def mark_delivered(
        self,
        alert_id: str,
        destination: str,
        ticket_ref: str,
        revision: int,
        fingerprint: str | None = None,
        owner: str | None = None,
        action: str | None = None,
    ) -> None:
        """Record that `destination` has `alert_id` at `revision` as ticket `ticket_ref`."""
        now = _iso(_now())
        release, release_args = self._release(owner)
        with self._tx() as cur:
            self._ensure_row(cur, alert_id, destination)
            cur.execute(
                self._q(
                    "SELECT ticket_ref FROM alert_deliveries WHERE alert_id = ? AND destination = ?"
                ),
                (alert_id, destination),
            )
            previous = cur.fetchone()[0]
            cur.execute(
                self._q(
                    "UPDATE alert_deliveries SET "
                    "revision = CASE WHEN revision > ? THEN revision ELSE ? END, "
                    "fingerprint = ?, ticket_ref = ?, delivered_at = ?, "
                    "first_delivered_at = COALESCE(first_delivered_at, ?), "
                    f"attempts = 0, last_error = NULL, last_attempt_at = ?, {release} "
                    "WHERE alert_id = ? AND destination = ?"
                ),
                (
                    revision,
                    revision,
                    fingerprint,
                    _text(ticket_ref),
                    now,
                    now,
                    now,
                    *release_args,
                    alert_id,
                    destination,
                ),
            )
            cur.execute(
                self._q(
                    "INSERT INTO delivery_log (alert_id, destination, revision, ticket_ref, "
                    "action, "
                    "delivered_at, worker) VALUES (?, ?, ?, ?, ?, ?, ?)"
                ),
                (
                    alert_id,
                    destination,
                    revision,
                    _text(ticket_ref),
                    action or ("updated" if previous else "created"),
                    now,
                    owner,
                ),
            )

    def mark_failed(
        self, alert_id: str, destination: str, error: str, owner: str | None = None
    ) -> None:
        """Record a failed attempt; the alert stays pending. `error` is stored redacted."""
        now = _iso(_now())
        release, release_args = self._release(owner)
        with self._tx() as cur:
            self._ensure_row(cur, alert_id, destination)
            cur.execute(
                self._q(
                    f"UPDATE alert_deliveries SET attempts = attempts + 1, last_error = ?, "
                    f"last_attempt_at = ?, {release} WHERE alert_id = ? AND destination = ?"
                ),
                (_text(redact(error))[:2000], now, *release_args, alert_id, destination),
            )

    def renew(self, owner: str, lease_seconds: float) -> int:
        """Extend every claim `owner` holds (the delivering worker's heartbeat): a live worker
        keeps its claim however long a delivery takes; a killed one loses it `lease_seconds`
        after its last beat."""
        until = _iso(_now() + timedelta(seconds=lease_seconds))
        with self._tx() as cur:
            cur.execute(
                self._q(
                    "UPDATE alert_deliveries SET claimed_until = ? "
                    "WHERE claimed_by = ? AND claimed_until IS NOT NULL"
                ),
                (until, owner),
            )
            return cur.rowcount

    def release(self, alert_id: str, destination: str, owner: str) -> None:
        release, release_args = self._release(owner)
        with self._tx() as cur:
            cur.execute(
                self._q(
                    f"UPDATE alert_deliveries SET {release} WHERE alert_id = ? AND destination = ?"
                ),
                (*release_args, alert_id, destination),
            )

    def reset(self, destinations: list[str], alert_id: str | None = None) -> int:
        """Make delivered alerts pending again for `destinations` (a forced redelivery): the
        ticket reference stays, so the destination updates its ticket rather than adding one."""
        marks = ", ".join("?" for _ in destinations)
        where = " AND alert_id = ?" if alert_id else ""
        with self._tx() as cur:
            cur.execute(
                self._q(
                    f"UPDATE alert_deliveries SET revision = 0 "
                    f"WHERE destination IN ({marks}){where}"
                ),
                (*destinations, *([alert_id] if alert_id else [])),
            )
            return cur.rowcount

    # --- run history ----------------------------------------------------------------------------

    def record_run(self, rule_id: str, table: str, window_end: str, rows: int, status: str) -> None:
        """UPSERT: a re-run of an interval replaces its own entry, never adds a second."""
        with self._tx() as cur:
            cur.execute(
                self._q(
                    "INSERT INTO run_history (rule_id, table_name, window_end, rows_in_window, "
                    "status, "
                    "recorded_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (rule_id, table_name, "
                    "window_end) "
                    "DO UPDATE SET rows_in_window = excluded.rows_in_window, status = "
                    "excluded.status, "
                    "recorded_at = excluded.recorded_at"
                ),
                (rule_id, table, window_end, rows, status, _iso(_now())),
            )

    def trailing_runs(self, rule_id: str, table: str, before_end: str, runs: int) -> list[int]:
        """Rows in the window of the last `runs` runs that ended before this one; failed runs are
        left out, so an outage does not lower the baseline."""
        with self._tx(write=False) as cur:
            cur.execute(
                self._q(
                    "SELECT rows_in_window FROM run_history WHERE rule_id = ? AND table_name = ? "
                    "AND window_end < ? AND status != 'failed' ORDER BY window_end DESC LIMIT ?"
                ),
                (rule_id, table, before_end, runs),
            )
            return [row[0] for row in cur.fetchall()]

    def record_profile(
        self,
        rule_id: str,
        table: str,
        window_end: str,
        hourly: dict[str, int],
        newest: str | None,
        status: str,
    ) -> None:
        """UPSERT a run's hourly profile ({"YYYY-MM-DDTHH": rows}, every hour of its window)."""
        with self._tx() as cur:
            cur.execute(
                self._q(
                    "INSERT INTO run_profile (rule_id, table_name, window_end, hourly, newest, "
                    "status, "
                    "recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (rule_id, table_name, window_end) DO UPDATE SET "
                    "hourly = excluded.hourly, newest = excluded.newest, status = excluded.status, "
                    "recorded_at = excluded.recorded_at"
                ),
                (
                    rule_id,
                    table,
                    window_end,
                    json.dumps(hourly, sort_keys=True),
                    newest,
                    status,
                    _iso(_now()),
                ),
            )

    def trailing_profiles(self, rule_id: str, table: str, before_end: str, runs: int) -> list[dict]:
        """Hourly profiles of the last `runs` runs that ended before this one, newest first;
        failed runs are left out (an outage is no rhythm)."""
        with self._tx(write=False) as cur:
            cur.execute(
                self._q(
                    "SELECT window_end, hourly, newest, status FROM run_profile WHERE rule_id = ? "
                    "AND table_name = ? AND window_end < ? AND status != 'failed' "
                    "ORDER BY window_end DESC LIMIT ?"
                ),
                (rule_id, table, before_end, runs),
            )
            return [
                {
                    "window_end": end,
                    "hourly": json.loads(hourly),
                    "newest": newest,
                    "status": status,
                }
                for end, hourly, newest, status in cur.fetchall()
            ]

    def delivery_log(self, alert_id: str | None = None) -> list[dict]:
        where, args = ("WHERE alert_id = ?", (alert_id,)) if alert_id else ("", ())
        with self._tx(write=False) as cur:
            cur.execute(
                self._q(
                    "SELECT alert_id, destination, revision, ticket_ref, action, "
                    f"delivered_at, worker FROM delivery_log {where} ORDER BY id"
                ),
                args,
            )
            keys = (
                "alert_id",
                "destination",
                "revision",
                "ticket",
                "action",
                "delivered_at",
                "worker",
            )
            return [dict(zip(keys, row)) for row in cur.fetchall()]


def open_store(url: str | None = None, resolver=None) -> AlertStore:
    """The store `url` names, else the one DETECTION_ALERT_STORE names (a path, a sqlite:/// or
    postgresql:// URL, or a connection id that `resolver` or AIRFLOW_CONN_<ID> resolves)."""
    from . import config

    return AlertStore(url or resolve_store(config.alert_store(), resolver))
