"""What a view is: a named fold of the events it cares about into tables of its own."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, cast
from uuid import UUID

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.domain import Aggregate
from eventsourcing.sqlite import SQLiteCursor
from eventsourcing.utils import get_topic

Cursor = SQLiteCursor
"""The open write transaction a projection writes its rows in (the runner opens and commits it)."""

Handler = Callable[[Any, int, Cursor], None]
"""One overload of ``process_event``, bound: (event, position, cursor) -> None."""


@dataclass(frozen=True)
class ViewTable:
    """One table of a view, with the columns that order its rows canonically (for checksums)."""

    name: str
    key: tuple[str, ...]


class Projection(ABC):
    """A view of the event log: one ``process_event`` overload per event type it cares about.

    ``process_event(event, position, cursor)`` writes rows and returns nothing; ``position`` is the
    event's place in the global log. A projection reads no other projection's tables and never calls
    the application, so dropping its tables and replaying the log gives the same rows.
    """

    name: ClassVar[str]
    """The view's name, which is also its tracking name."""
    tables: ClassVar[tuple[ViewTable, ...]]
    schema: ClassVar[tuple[str, ...]]
    """The statements that create the view's tables and indexes (idempotent)."""
    topics: ClassVar[tuple[str, ...]] = ()
    """Topics of the event types the view has an overload for (derived, so it cannot drift)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dispatch = cls.__dict__.get("process_event")
        if dispatch is None:
            raise TypeError(f"{cls.__name__} must define its own @singledispatchmethod process_event")
        if dispatch.deferred_registrations:
            raise TypeError(f"{cls.__name__}.process_event has overloads whose event type cannot be resolved")
        cls.topics = tuple(sorted(get_topic(t) for t in dispatch.dispatcher.registry if t is not object))

    @singledispatchmethod
    @abstractmethod
    def process_event(self, event: object, position: int, cursor: Cursor) -> None:
        """Fold one event into the view's rows (the base overload: events of no interest)."""

    def handler(self, event_type: type) -> Handler:
        """The ``process_event`` overload for one event type, bound to this projection.

        The runner resolves it once per topic: dispatching through ``singledispatchmethod`` on every
        call builds a new bound wrapper each time, a cost the hot path need not pay.
        """
        for klass in type(self).__mro__:
            if "process_event" in vars(klass):
                overload = vars(klass)["process_event"].dispatcher.dispatch(event_type)
                return cast(Handler, overload.__get__(self, type(self)))
        raise TypeError(f"{type(self).__name__} has no process_event")  # pragma: no cover

    def clear(self, cursor: Cursor) -> None:
        """Delete every row of the view (before a rebuild)."""
        for table in self.tables:
            cursor.execute(f"DELETE FROM {table.name}")  # noqa: S608 - table names are constants


def event_class(aggregate: type[Aggregate], name: str) -> type[Any]:
    """An event class the library generated from an aggregate's ``@event`` method.

    The classes exist only at run time, so type checkers cannot name them; look them up here, once.
    """
    found = vars(aggregate).get(name)
    if not (isinstance(found, type) and issubclass(found, Aggregate.Event)):
        raise LookupError(f"{aggregate.__name__} has no event {name!r}")
    return found


def iso(moment: datetime) -> str:
    """A time as fixed-width ISO 8601 UTC text, so that text order is time order."""
    utc = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    return utc.isoformat(timespec="microseconds")


def short_id(case_id: UUID) -> str:
    """The first 8 hex digits of a case id, as operators read them out."""
    return case_id.hex[:8]
