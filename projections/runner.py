"""The embedded projection runner: event store notification log → projections → view store, in batches."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any
from uuid import UUID

import structlog
from eventsourcing.persistence import ApplicationRecorder, Mapper, Notification

from projections.projection import Projection, chosen, remembering, routes
from projections.store import Views

log = structlog.get_logger()


class Verdict(Enum):
    """What a gate says of one event: fold it, pass over it, or read nothing from its position on."""

    APPLY = "apply"
    SKIP = "skip"
    END = "end"


Gate = Callable[[Any, int], Verdict]
"""Decides, for each event a projection would fold (event, position), whether it is folded (as-of replays)."""

_APPLY, _END = Verdict.APPLY, Verdict.END  # module globals: cheaper to look up per event than enum members

Progress = Callable[[int], None]
"""Told the position every projection has read up to, after each committed batch."""


class EmbeddedRunner:
    """Follows the event store's notification log and folds it into the views (embedded mode).

    Each batch's view rows and every projection's new tracking position are written in one
    transaction, so a crash between batches neither applies an event twice nor skips one. Each
    projection tracks its own position under its own name, so one view can be rebuilt alone.
    Several runners, in one process or several, may share a view store: each batch holds the store's
    write lock and starts from the positions the store records, not from what this runner last saw.
    """

    def __init__(
        self,
        app_recorder: ApplicationRecorder,
        mapper: Mapper[UUID],
        store: Views,
        projections: Sequence[Projection],
        batch_size: int = 500,
        *,
        stop: int | None = None,
        gate: Gate | None = None,
        progress: Progress | None = None,
    ) -> None:
        """``stop``: the last log position to read (None: the log's end, whatever it is when a batch reads it).
        ``gate``: asked once per event some projection would fold (None: every event is folded).
        ``progress``: told the position reached after each batch.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        names = [projection.name for projection in projections]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"projections need distinct names, got {names}")
        self._recorder = app_recorder
        self._mapper = mapper
        self._store = store
        self._projections = tuple(projections)
        self._batch_size = batch_size
        self._stop = stop
        self._gate = gate
        self._progress = progress
        # Which projection overloads want an event of a topic: decided once, so a topic nobody
        # follows (command receipts are half the log) costs a dict lookup and is never decoded.
        self._routes = routes(self._projections)
        self._topics = sorted(self._routes)
        self._positions = store.positions(names)

    @property
    def position(self) -> int:
        """The log position every projection had read up to when this runner last looked (the lowest of them)."""
        return min(self._positions.values())

    def positions(self) -> dict[str, int]:
        """Each projection's tracking position, by name, as of this runner's last batch."""
        return dict(self._positions)

    @property
    def stop(self) -> int | None:
        """The last log position this runner reads (None: no end); a gate's END sets it."""
        return self._stop

    def run_until_caught_up(self) -> int:
        """Apply batches until the log has nothing new (or ``stop`` is reached); returns the events applied."""
        applied = 0
        while True:
            more, batch_applied = self._run_batch()
            applied += batch_applied
            if self._progress is not None:
                self._progress(self.position)
            if not more:
                return applied

    def run(self, stop: threading.Event, poll_interval: float = 0.2) -> None:
        """Follow the log until ``stop`` is set, polling every ``poll_interval`` seconds once caught up.

        SQLite's recorder cannot push new events, so the runner polls the notification log.
        """
        while not stop.is_set():
            self.run_until_caught_up()
            stop.wait(poll_interval)

    def rebuild(self, name: str | None = None) -> int:
        """Drop one view's rows and tracking (or every view's, for None) and replay the log from zero."""
        views = chosen(self._projections, name)
        # Rows and tracking go in one transaction: whichever runner writes the next batch, this one
        # or one in another process, reads the reset positions and replays these views from zero.
        with self._store.transaction() as cursor:
            for projection in views:
                projection.clear(cursor)
                self._store.forget(cursor, projection.name)
        self._positions.update(dict.fromkeys((p.name for p in views), 0))
        log.info("views_cleared", views=[p.name for p in views])
        applied = self.run_until_caught_up()
        log.info("views_rebuilt", views=[p.name for p in views], events=applied, position=self.position)
        return applied

    def _run_batch(self) -> tuple[bool, int]:
        """Read one batch and apply it in one transaction; returns (whether more may follow, events applied)."""
        applied = 0
        gate = self._gate
        # The write lock first, then the positions: another runner (in this process or another) may
        # have applied batches or cleared a view since this one last looked, and until this
        # transaction ends nobody else can.
        # The views' memos (TransactionMemo) live as long as this transaction: it rolls back whole or commits.
        with self._store.transaction() as cursor, remembering(self._projections, cursor):
            positions = self._store.positions(list(self._positions), cursor)
            start = min(positions.values()) + 1
            # Where the log ends, fixed first: the store commits one writer at a time, so every position up
            # to the highest is committed. A batch is the next ``batch_size`` positions, or fewer at the end.
            end = self._stop if self._stop is not None else (self._recorder.max_notification_id() or 0)
            last = min(end, start + self._batch_size - 1)
            more = last < end
            notifications: Sequence[Notification] = ()
            if start <= last and self._topics:
                # Only the topics some view folds: the rest (command receipts are half the log) are
                # neither fetched nor turned into notifications.
                notifications = self._recorder.select_notifications(
                    start=start, limit=self._batch_size, stop=last, topics=self._topics
                )
            for notification in notifications:
                event = None
                verdict = _APPLY
                for name, process_event in self._routes[notification.topic]:
                    # A projection being rebuilt is behind the others: the rest have this event already.
                    if positions[name] < notification.id:
                        if event is None:
                            event = self._mapper.to_domain_event(notification)
                            if gate is not None and (verdict := gate(event, notification.id)) is not _APPLY:
                                break
                        process_event(event, notification.id, cursor)
                if verdict is not _APPLY:
                    if verdict is _END:
                        # Nothing from here on: the batch ends before this event, and so does the runner.
                        last = self._stop = notification.id - 1
                        more = False
                        break
                    continue
                if event is not None:
                    applied += 1
            # Every projection behind the batch has now read it, interested or not, so a command whose
            # last event no view cares about can still be waited for.
            for name in [name for name, position in positions.items() if position < last]:
                self._store.track(cursor, name, last)
                positions[name] = last
        # Only once the transaction committed: a failed batch leaves the runner where it was.
        self._positions = positions
        return more, applied
