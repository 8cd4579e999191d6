"""As-of replays (回溯): the views as they stood at an instant, by recorded or occurred time, in a store apart."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import structlog
from eventsourcing.persistence import ApplicationRecorder, Mapper

from engine.errors import InvalidCommand
from projections.projection import Projection, routes
from projections.runner import EmbeddedRunner, Progress, Verdict
from projections.store import ViewStore, checksum
from projections.views import VIEWS

log = structlog.get_logger()

RECORDED, OCCURRED = "recorded", "occurred"
BY = (RECORDED, OCCURRED)
"""Recorded time: what the system knew at the instant. Occurred time: what had happened by then."""

CLOCK_WINDOW = timedelta(minutes=5)
"""How far past the instant a recorded-time replay looks for events stamped out of log order (see ``late_stamped``)."""

BATCH = 2000
"""Log positions per transaction of a replay: nobody else writes its store, so fewer and larger batches."""


@dataclass(frozen=True)
class ViewState:
    """One view of a replay (or a rebuild): its rows, table by table, and its checksum."""

    name: str
    rows: dict[str, int]
    checksum: str


@dataclass(frozen=True)
class Replay:
    """What a replay built: where, as of when and by which time, how far it read the log, and each view."""

    path: Path
    as_of: datetime
    by: str
    position: int
    """The last log position the replay read (by recorded time: the one before the first event recorded later)."""
    applied: int
    """Events folded into the views."""
    passed_over: int
    """By occurred time: events of the log up to ``position`` left out (they occurred later, or after an event
    of their aggregate that did). By recorded time: 0."""
    late_stamped: tuple[int, ...]
    """By recorded time: positions after the cut whose events are stamped at or before the instant (the clock
    check; normally none). Left out: see docs/replay.md."""
    views: tuple[ViewState, ...]


class RecordedCut:
    """By recorded time: every event up to the first one recorded after the instant, and nothing from there on.

    The log is in the order the store committed the events, and an event is stamped (``recorded_at``)
    just before its commit, so the events the system knew at the instant are a prefix of the log.
    """

    def __init__(self, as_of: datetime) -> None:
        self.as_of = as_of
        self.cut: int | None = None
        """The position of the first event recorded after the instant, once seen."""

    def __call__(self, event: Any, position: int) -> Verdict:
        if event.timestamp > self.as_of:
            self.cut = position
            return Verdict.END
        return Verdict.APPLY


class OccurredPrefix:
    """By occurred time: the events that occurred by the instant, each aggregate's only up to its first that did not.

    Events are taken in log order. An aggregate stops at its first event that occurred after the
    instant, even if a later one (a late upload) occurred before it: a view never sees version n+1 of
    an aggregate without version n, so its rows are always ones the aggregate passed through.
    """

    def __init__(self, as_of: datetime) -> None:
        self.as_of = as_of
        self.stopped: set[UUID] = set()
        self.passed_over = 0

    def __call__(self, event: Any, position: int) -> Verdict:
        aggregate = event.originator_id
        if aggregate in self.stopped or occurred_at(event) > self.as_of:
            self.stopped.add(aggregate)
            self.passed_over += 1
            return Verdict.SKIP
        return Verdict.APPLY


def occurred_at(event: Any) -> datetime:
    """When an event happened in the street (every gridloop event has it; the recorded time otherwise)."""
    moment: datetime = getattr(event, "occurred_at", None) or event.timestamp
    return moment


def check_as_of(as_of: datetime, by: str) -> None:
    """Refuse a naive instant or an unknown kind of time, saying what is allowed."""
    if as_of.tzinfo is None:
        raise InvalidCommand("as_of", f"{as_of.isoformat()} has no time zone", "an aware time (naive: Asia/Shanghai)")
    if by not in BY:
        raise InvalidCommand("by", f"{by!r} is not a kind of time", " or ".join(BY))


def replay(
    recorder: ApplicationRecorder,
    mapper: Mapper[UUID],
    path: Path,
    projections: Sequence[Projection],
    as_of: datetime,
    by: str = RECORDED,
    progress: Progress | None = None,
) -> Replay:
    """Fold the log as of ``as_of`` into a new view store at ``path`` (replacing one there), for ``projections``.

    The store has every view's tables (the queries expect them) but only ``projections`` are folded.
    It is built under a temporary name and renamed when complete: a replay that fails or is killed
    leaves no store that looks finished. Live views are never opened.
    """
    check_as_of(as_of, by)
    partial = path.with_name(path.name + ".partial")
    remove_store(partial)
    path.parent.mkdir(parents=True, exist_ok=True)
    store = ViewStore.open(partial, VIEWS)
    try:
        gate: RecordedCut | OccurredPrefix = RecordedCut(as_of) if by == RECORDED else OccurredPrefix(as_of)
        runner = EmbeddedRunner(recorder, mapper, store, projections, BATCH, gate=gate, progress=progress)
        applied = runner.run_until_caught_up()
        position = runner.position
        late: tuple[int, ...] = ()
        if isinstance(gate, RecordedCut) and gate.cut is not None:
            topics = sorted(routes(projections))
            late = late_stamped(recorder, mapper, gate.cut, as_of, topics)
        passed_over = gate.passed_over if isinstance(gate, OccurredPrefix) else 0
        with store.transaction() as cursor:
            cursor.execute(
                "CREATE TABLE IF NOT EXISTS replay_of (as_of TEXT NOT NULL, by TEXT NOT NULL, "
                "position INTEGER NOT NULL, applied INTEGER NOT NULL, views TEXT NOT NULL)"
            )
            cursor.execute("DELETE FROM replay_of")
            cursor.execute(
                "INSERT INTO replay_of VALUES (?, ?, ?, ?, ?)",
                (as_of.isoformat(), by, position, applied, ",".join(p.name for p in projections)),
            )
        views = tuple(view_state(store, type(p)) for p in projections)
    finally:
        store.close()
    remove_store(path)
    partial.rename(path)
    log.info("views_replayed", as_of=as_of.isoformat(), by=by, position=position, applied=applied, path=str(path))
    return Replay(path, as_of, by, position, applied, passed_over, late, views)


def late_stamped(
    recorder: ApplicationRecorder, mapper: Mapper[UUID], cut: int, as_of: datetime, topics: Sequence[str]
) -> tuple[int, ...]:
    """Positions after ``cut`` whose events are stamped at or before ``as_of``: the check of the prefix claim.

    Reads on from the cut while the events are stamped less than CLOCK_WINDOW after the instant. A
    writer stamps an event, then waits for the store's lock, so two writers can commit out of stamp
    order by as long as a lock wait. Such an event was committed after one stamped after the instant,
    so it was not known at the instant either, and the cut is right to leave it out. Only a clock set
    back (or a writer's clock behind another's) makes the claim wrong; the positions say where to look.
    """
    found: list[int] = []
    start = cut + 1
    while batch := recorder.select_notifications(start, BATCH, topics=topics):
        for notification in batch:
            event: Any = mapper.to_domain_event(notification)
            stamped: datetime = event.timestamp
            if stamped > as_of + CLOCK_WINDOW:
                return tuple(found)
            if stamped <= as_of:
                found.append(notification.id)
        start = batch[-1].id + 1
    return tuple(found)


def view_state(store: ViewStore, view: type[Projection]) -> ViewState:
    """A view's row counts and checksum, read in one snapshot."""
    with store.reading() as cursor:
        rows = {}
        for table in view.tables:
            cursor.execute(f"SELECT COUNT(*) FROM {table.name}")  # noqa: S608 - table names are constants
            rows[table.name] = int(cursor.fetchone()[0])
        return ViewState(view.name, rows, checksum(cursor.sqlite_cursor, view))


def remove_store(path: Path) -> None:
    """Delete an SQLite file and its WAL and shared-memory files, if there."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
