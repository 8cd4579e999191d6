"""The base of gridloop's aggregates: recorded time from an injected clock, occurred time from the source."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

GRIDLOOP_NAMESPACE = uuid5(NAMESPACE_URL, "https://gridloop.invalid/ids")
"""Namespace of gridloop's name-based ids, so the same code always gives the same id."""

_recording_clock: ContextVar[Callable[[], datetime] | None] = ContextVar("gridloop_recording_clock", default=None)


@contextmanager
def recording_time(now: Callable[[], datetime]) -> Iterator[None]:
    """Within this block, new events are stamped ``recorded_at`` by ``now`` (the injected clock)."""
    token = _recording_clock.set(now)
    try:
        yield
    finally:
        _recording_clock.reset(token)


def _recorded_now() -> datetime:
    clock = _recording_clock.get()
    return clock() if clock is not None else datetime.now(UTC)


def name_id(kind: str, code: str) -> UUID:
    """The id of a named thing (grid, worker, division, command receipt): stable across runs."""
    return uuid5(GRIDLOOP_NAMESPACE, f"{kind}:{code}")


class GridloopAggregate(Aggregate):
    """An aggregate whose events carry ``recorded_at`` from the injected clock."""

    class Event(Aggregate.Event):
        """A fact about a gridloop aggregate."""

        @staticmethod
        def create_timestamp() -> datetime:
            return _recorded_now()

        @property
        def recorded_at(self) -> datetime:
            """When the store accepted the event (the library's ``timestamp``)."""
            return self.timestamp
