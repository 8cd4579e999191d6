"""The embedded projection runner: event store notification log → projections → view store, in batches."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from uuid import UUID

import structlog
from eventsourcing.persistence import ApplicationRecorder, Mapper

from projections.projection import Projection, chosen, routes
from projections.store import ViewStore

log = structlog.get_logger()


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
        store: ViewStore,
        projections: Sequence[Projection],
        batch_size: int = 500,
    ) -> None:
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
        # Which projection overloads want an event of a topic: decided once, so a topic nobody
        # follows (command receipts are half the log) costs a dict lookup and is never decoded.
        self._routes = routes(self._projections)
        self._positions = store.positions(names)

    @property
    def position(self) -> int:
        """The log position every projection had read up to when this runner last looked (the lowest of them)."""
        return min(self._positions.values())

    def positions(self) -> dict[str, int]:
        """Each projection's tracking position, by name, as of this runner's last batch."""
        return dict(self._positions)

    def run_until_caught_up(self) -> int:
        """Apply batches until the log has nothing new; returns how many events were applied."""
        applied = 0
        while True:
            read, batch_applied = self._run_batch()
            applied += batch_applied
            if read < self._batch_size:
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

    def _run_batch(self) -> tuple[int, int]:
        """Read one batch and apply it in one transaction; returns (notifications read, events applied)."""
        applied = 0
        # The write lock first, then the positions: another runner (in this process or another) may
        # have applied batches or cleared a view since this one last looked, and until this
        # transaction ends nobody else can.
        with self._store.transaction() as cursor:
            positions = self._store.positions(list(self._positions), cursor)
            notifications = self._recorder.select_notifications(
                start=min(positions.values()) + 1, limit=self._batch_size
            )
            for notification in notifications:
                interested = self._routes.get(notification.topic)
                if interested is None:
                    continue
                event = None
                for name, process_event in interested:
                    # A projection being rebuilt is behind the others: the rest have this event already.
                    if positions[name] < notification.id:
                        if event is None:
                            event = self._mapper.to_domain_event(notification)
                        process_event(event, notification.id, cursor)
                if event is not None:
                    applied += 1
            if notifications:
                # Every projection behind this batch has now read it, interested or not, so a
                # command whose last event no view cares about can still be waited for.
                last = notifications[-1].id
                for name in [name for name, position in positions.items() if position < last]:
                    self._store.track(cursor, name, last)
                    positions[name] = last
        # Only once the transaction committed: a failed batch leaves the runner where it was.
        self._positions = positions
        return len(notifications), applied
