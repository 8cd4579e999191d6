"""Delivering resident notifications (通知下发): the outbox's messages to a pluggable sender, at least once.

The outbox (projections.notifications) is a view: rebuilt, it has the same rows under the same ids. What has
been sent lives here, in a table of its own in its own file (``notify.sqlite`` in the data directory), so no
rebuild, replay or fresh view store ever sends a message twice. Each message goes out with its stable id,
the idempotency key an SMS gateway or the resident app uses to drop a repeat: a crash between a send and its
record sends that one message again (at least once), never loses it.
"""

from __future__ import annotations

import sqlite3
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol, TextIO, runtime_checkable

import structlog

from engine.clock import Clock
from ops.config import CONSOLE_SENDER, ConfigError, Settings, sender_factory
from projections.notifications import Notification, notification
from projections.projection import iso

log = structlog.get_logger()

SENT, PENDING, FAILED = "sent", "pending", "failed"
"""Delivery states: sent; pending (an attempt failed, another is due at ``next_attempt_at``); failed (gave up)."""
MAX_ERROR = 500
"""Characters of a sender's error kept in ``last_error``."""

DELIVERY_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS notification_delivery ("
    "id TEXT PRIMARY KEY, "
    "status TEXT NOT NULL, "
    "attempts INTEGER NOT NULL, "
    "last_error TEXT NOT NULL DEFAULT '', "
    "sent_at TEXT, "
    "next_attempt_at TEXT, "
    "position INTEGER NOT NULL, "
    "updated_at TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS notification_delivery_due ON notification_delivery (status, next_attempt_at)",
)

# The outbox's messages never attempted, and those whose retry is due, in log order. The anti-join walks the
# outbox in position order and stops at the limit; it reads past every message already settled, which is
# fine for an outbox of some hundred thousand rows (see docs/callbacks.md on pruning beyond that).
_DUE = (
    "SELECT o.* FROM views.notification_outbox AS o "
    "WHERE NOT EXISTS (SELECT 1 FROM notification_delivery AS d WHERE d.id = o.notification_id) "
    "UNION ALL "
    "SELECT o.* FROM notification_delivery AS d JOIN views.notification_outbox AS o ON o.notification_id = d.id "
    "WHERE d.status = 'pending' AND d.next_attempt_at <= :now "
    "ORDER BY position, notification_id LIMIT :limit"
)


@runtime_checkable
class Sender(Protocol):
    """Delivers one notification to its recipient (SMS gateway, resident app push, console), or raises.

    ``notification.id`` is stable: use it as the idempotency key, since a message may come twice after a crash.
    """

    def send(self, notification: Notification) -> None: ...


class ConsoleSender:
    """Development: one line per message on a stream (standard output by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream

    def send(self, notification: Notification) -> None:
        stream = self.stream or sys.stdout
        print(f"[notify] {notification.id} → {notification.recipient}: {notification.message}", file=stream)
        stream.flush()


def make_sender(settings: Settings) -> Sender:
    """The configured sender: the console's, or the adapter ``notify_sender`` names, made with no arguments."""
    if settings.notify_sender == CONSOLE_SENDER:
        return ConsoleSender()
    sender = sender_factory(settings.notify_sender)()
    if not isinstance(sender, Sender):
        raise ConfigError(
            f"notify_sender: {settings.notify_sender!r} made a {type(sender).__name__}, which has no send(notification)"
        )
    return sender


def delivery_path(settings: Settings) -> Path:
    """Where the delivery state lives: beside the stores, outside the view store (which may be rebuilt or replaced)."""
    return settings.data_dir / "notify.sqlite"


@dataclass(frozen=True)
class Round:
    """What one delivery round did."""

    sent: int = 0
    retrying: int = 0
    failed: int = 0

    @property
    def attempted(self) -> int:
        return self.sent + self.retrying + self.failed


@dataclass(frozen=True)
class FailedDelivery:
    """A notification given up on, with the last error the sender raised."""

    id: str
    attempts: int
    last_error: str
    updated_at: datetime


@dataclass(frozen=True)
class DeliveryStatus:
    """The outbox against its deliveries: how many are waiting, retrying, sent, failed; the failures."""

    outbox: int
    waiting: int
    """Never attempted yet."""
    retrying: int
    sent: int
    failed: int
    failures: tuple[FailedDelivery, ...]


class Deliverer:
    """Sends the outbox's due notifications in log order, recording each attempt; retries with backoff."""

    def __init__(
        self,
        path: Path,
        views_path: Path,
        sender: Sender,
        clock: Clock,
        *,
        max_attempts: int = 5,
        backoff: timedelta = timedelta(seconds=30),
    ) -> None:
        self.path, self.views_path, self.sender, self.clock = path, views_path, sender, clock
        self.max_attempts, self.backoff = max_attempts, backoff
        with self._connect() as db:
            for statement in DELIVERY_SCHEMA:
                db.execute(statement)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as db:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            # Each attempt commits on its own; an OS crash may lose the last few records, and those messages go
            # out again: at least once, as promised, and the idempotency key lets the gateway drop the repeat.
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("ATTACH DATABASE ? AS views", (str(self.views_path),))  # read only: the views are not ours
            yield db

    def deliver(self, limit: int = 100) -> Round:
        """One round: attempt up to ``limit`` due notifications, each recorded as soon as the sender answers."""
        outcomes: Counter[str] = Counter()
        with self._connect() as db:
            for row in db.execute(_DUE, {"now": iso(self.clock.now()), "limit": limit}).fetchall():
                outcomes[self._attempt(db, notification(row))] += 1
        return Round(outcomes[SENT], outcomes[PENDING], outcomes[FAILED])

    def _attempt(self, db: sqlite3.Connection, note: Notification) -> str:
        found = db.execute("SELECT attempts FROM notification_delivery WHERE id = ?", (note.id,)).fetchone()
        attempts = (found[0] if found else 0) + 1
        try:
            self.sender.send(note)
        except Exception as exc:  # any failure of an adapter is a failed attempt, recorded and retried
            now = self.clock.now()
            error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR]
            status = FAILED if attempts >= self.max_attempts else PENDING
            retry_at = iso(now + self.backoff * 2 ** (attempts - 1)) if status == PENDING else None
            self._record(db, note, status, attempts, error=error, next_attempt_at=retry_at)
            log.warning(
                "notification_failed", id=note.id, attempts=attempts, error=error, gave_up=status == FAILED,
                next_attempt_at=retry_at,
            )  # fmt: skip
            return status
        self._record(db, note, SENT, attempts, sent_at=iso(self.clock.now()))
        log.info("notification_sent", id=note.id, recipient=note.recipient, status=note.status, attempts=attempts)
        return SENT

    def _record(
        self,
        db: sqlite3.Connection,
        note: Notification,
        status: str,
        attempts: int,
        *,
        error: str = "",
        sent_at: str | None = None,
        next_attempt_at: str | None = None,
    ) -> None:
        db.execute(
            "INSERT INTO notification_delivery (id, status, attempts, last_error, sent_at, next_attempt_at, position, "
            "updated_at) VALUES (:id, :status, :attempts, :error, :sent_at, :next, :position, :now) "
            "ON CONFLICT (id) DO UPDATE SET status = excluded.status, attempts = excluded.attempts, "
            "last_error = excluded.last_error, sent_at = excluded.sent_at, next_attempt_at = excluded.next_attempt_at, "
            "updated_at = excluded.updated_at",
            {
                "id": note.id, "status": status, "attempts": attempts, "error": error, "sent_at": sent_at,
                "next": next_attempt_at, "position": note.position, "now": iso(self.clock.now()),
            },
        )  # fmt: skip

    def status(self, failures: int = 20) -> DeliveryStatus:
        """How the outbox stands against its deliveries, and the latest ``failures`` given up on."""
        with self._connect() as db:
            outbox = db.execute("SELECT COUNT(*) FROM views.notification_outbox").fetchone()[0]
            counts = dict(db.execute("SELECT status, COUNT(*) FROM notification_delivery GROUP BY status").fetchall())
            failed = db.execute(
                "SELECT id, attempts, last_error, updated_at FROM notification_delivery WHERE status = 'failed' "
                "ORDER BY updated_at DESC, id LIMIT ?",
                (failures,),
            ).fetchall()
        settled = sum(counts.values())
        return DeliveryStatus(
            outbox=outbox, waiting=max(outbox - settled, 0), retrying=counts.get(PENDING, 0),
            sent=counts.get(SENT, 0), failed=counts.get(FAILED, 0),
            failures=tuple(
                FailedDelivery(r["id"], r["attempts"], r["last_error"], datetime.fromisoformat(r["updated_at"]))
                for r in failed
            ),
        )  # fmt: skip
