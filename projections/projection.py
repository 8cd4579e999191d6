"""What a view is: a named fold of the events it cares about into tables of its own (and what case views share)."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol, cast
from uuid import UUID

from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.domain import Aggregate
from eventsourcing.utils import get_topic, resolve_topic

from engine.catalogue import Catalogue, default_catalogue
from engine.errors import UnknownReference
from engine.lifecycle import Status, status_after
from engine.work_order import WorkOrder, event_names


class Cursor(Protocol):
    """The open transaction a projection writes its rows in (the runner opens and commits it), on either store.

    Statements are SQLite's dialect with ``?`` or ``:name`` placeholders; rows read by position and by name.
    """

    def execute(self, sql: str, params: Any = (), /) -> object: ...

    def executemany(self, sql: str, params: Any, /) -> object: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> Any: ...

    @property
    def rowcount(self) -> int:
        """Rows the last INSERT, UPDATE or DELETE changed."""
        ...

    @property
    def description(self) -> Any:
        """The last SELECT's columns, each a sequence whose first item is the column's name (DB-API)."""
        ...


Handler = Callable[[Any, int, Cursor], None]
"""One overload of ``process_event``, bound: (event, position, cursor) -> None."""


@dataclass(frozen=True)
class ViewTable:
    """One table of a view, with the columns that order its rows canonically (for checksums)."""

    name: str
    key: tuple[str, ...]


class TransactionMemo:
    """What a view's handlers read and wrote of their own rows in one transaction of the embedded runner.

    A handler that must read a row before it writes it (where a case stands, say) can keep what it wrote,
    and the next event of the same case in the same batch need not read it back (measured: a fifth fewer
    statements folding the bench's reported, registered and dispatched cases, an eighth fewer over a
    simulated district's log in the rebuild's batches). Valid for one transaction only, and only where nothing else
    writes the view's rows in it and it is never partly rolled back: the embedded runner's batches, which
    roll back whole and are never retried on the same cursor. The Kafka runner retries records in
    savepoints, which a memo would outlive: it never opens one, and the handlers then read every row.
    """

    _memo: tuple[object, dict[Any, Any]] | None = None

    def remember_in(self, cursor: Cursor | None) -> None:
        """Keep a memo for the transaction of ``cursor`` from now on (None: keep none)."""
        self._memo = (cursor, {}) if cursor is not None else None

    def memo(self, cursor: Cursor) -> dict[Any, Any] | None:
        """The memo of the transaction of ``cursor``; None outside the transaction one was opened for."""
        memo = self._memo
        return memo[1] if memo is not None and memo[0] is cursor else None


class Projection(TransactionMemo, ABC):
    """A view of the event log: one ``process_event`` overload per event type it cares about.

    ``process_event(event, position, cursor)`` writes rows and returns nothing; ``position`` is the
    event's place in the global log. A projection reads no other projection's tables and never calls
    the application, so dropping its tables and replaying the log gives the same rows.
    """

    name: ClassVar[str]
    """The view's name, which is also its tracking name."""
    version: ClassVar[int] = 1
    """The version of the view's tables and of what its handlers write into them. Raise it with any change
    to either: the view store then drops the view's tables and tracking on opening, and the runners fold
    the view again from the start of the log."""
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


@functools.lru_cache(maxsize=8192)
def iso(moment: datetime) -> str:
    """A time as fixed-width ISO 8601 UTC text, so that text order is time order.

    Cached: every view writes an event's times, so each is formatted three to five times (measured:
    a fifth of a rebuild's Python time went to isoformat before).
    """
    utc = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    return utc.isoformat(timespec="microseconds")


_last_key: list[tuple[object, str]] = [(None, "")]
"""The last event ``originator_key`` was asked about, and its answer (one tuple: swapped whole, thread-safe)."""


def originator_key(event: Any) -> str:
    """``str(event.originator_id)``, the key of the event's rows, worked out once per event.

    The runner hands one decoded event to every view in turn, and each asks for its key: formatting the
    UUID again in each cost ten UUID.__str__ calls per event of the bench's log (4.5 % of a rebuild's time).
    """
    last = _last_key[0]
    if last[0] is event:
        return last[1]
    key = str(event.originator_id)
    _last_key[0] = (event, key)
    return key


def short_id(case_id: UUID) -> str:
    """The first 8 hex digits of a case id, as operators read them out."""
    return case_id.hex[:8]


def sql_set(states: frozenset[Status]) -> str:
    """A set of states as an SQL list, for ``status IN (…)``."""
    return "(" + ", ".join(f"'{s.value}'" for s in sorted(states)) + ")"


def starts_with(column: str, name: str, prefix: str, params: dict[str, Any]) -> str:
    """An SQL test that ``column`` begins with ``prefix``, as a range both stores walk an index for.

    Portable where GLOB is SQLite's own and LIKE's case sensitivity differs between the two; the range holds
    for SQLite's binary collation and PostgreSQL's C collation (gridloop's databases are created with C.UTF-8).
    """
    params[f"{name}_from"] = prefix
    params[f"{name}_to"] = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return f"({column} >= :{name}_from AND {column} < :{name}_to)"


def count_if(condition: str) -> str:
    """SQL counting the rows where ``condition`` holds: SQLite sums a comparison as 0 or 1, PostgreSQL does not.

    NULL where the condition is unknown on every row, as SQLite's ``SUM(condition)`` is.
    """
    return f"SUM(CASE WHEN {condition} THEN 1 WHEN NOT ({condition}) THEN 0 END)"


ANSWERS_AS_SQL = f"(CASE WHEN status = '{Status.SUSPENDED.value}' THEN suspended_from ELSE status END)"
"""The state a case row answers as: a suspended case keeps the party of the state it was suspended from."""


class CaseFold(TransactionMemo):
    """What the views with one row per case share: category names, and each event's move by engine.lifecycle.

    A view names the table holding its case rows, the columns every event updates (``every_event``)
    and what entering a state does to its row (``on_entering``, e.g. a return clears the assignee);
    its handlers add only the event's own columns. Which state an event leads to is never written
    here: ``engine.lifecycle.status_after`` decides, from the row as it stands.
    """

    case_table: ClassVar[str]
    insert_case: ClassVar[str]
    """The INSERT of a case's first row, with named parameters from ``new_case``."""
    every_event: ClassVar[str]
    """SET clauses each event applies, such as the row's log position."""
    on_entering: ClassVar[Mapping[Status, str]] = {}
    """SET clauses applied when an event moves the case into a state (not when it resumes there)."""

    def __init__(self, catalogue: Catalogue | None = None) -> None:
        self._catalogue = catalogue or default_catalogue()
        self._statements: dict[tuple[str, Status | None], str] = {}

    def category_name(self, code: str) -> str:
        """The category's name in the catalogue ('' for a code the catalogue does not know)."""
        category = self._catalogue.categories.get(code)
        return category.name if category is not None else ""

    def reported(self, event: Any, position: int, cursor: Cursor) -> None:
        """上报: the case's first row."""
        row = self.new_case(event, position)
        cursor.execute(self.insert_case, row)
        if (memo := self.memo(cursor)) is not None:
            memo[row["case_id"]] = (Status(row["status"]), None)

    def new_case(self, event: Any, position: int) -> dict[str, Any]:
        """A case's first row from its Reported event, as named parameters (each view inserts those it keeps)."""
        return {
            "case_id": originator_key(event), "short_id": short_id(event.originator_id),
            "status": status_after("Reported", None).value, "category": event.category,
            "category_name": self.category_name(event.category), "source": event.source, "grid": event.grid,
            "desk": event.desk, "description": event.description, "lon": event.lon, "lat": event.lat,
            "occurred_at": iso(event.occurred_at), "version": event.originator_version, "position": position,
        }  # fmt: skip

    def registered(self, event: Any, position: int, cursor: Cursor) -> None:
        """立案 may correct the category: the row takes the new code and its name."""
        changes = "category = :category, category_name = :category_name"
        self.move(
            event, position, cursor, changes, category=event.category, category_name=self.category_name(event.category)
        )

    def extension_granted(self, event: Any, position: int, cursor: Cursor) -> None:
        """批准延期: the deadline moves."""
        self.move(event, position, cursor, "deadline = :deadline", deadline=iso(event.new_deadline))

    def resumed(self, event: Any, position: int, cursor: Cursor) -> None:
        """恢复: the deadline moves on by the working time the case was parked (挂账 pauses the clock)."""
        deadline = getattr(event, "deadline", None)
        changes = "deadline = COALESCE(:deadline, deadline)"
        self.move(event, position, cursor, changes, deadline=iso(deadline) if deadline else None)

    def move(self, event: Any, position: int, cursor: Cursor, changes: str = "", **fields: Any) -> None:
        """Fold one event into its case's row: its own ``changes``, the state it leads to, what entering it does.

        The row is read first, in the runner's transaction, because where some events lead depends
        on where the case stands (a resumption, a supervision that moves nothing).
        """
        case_id = originator_key(event)
        memo = self.memo(cursor)
        known = memo.get(case_id) if memo is not None else None
        if known is not None:
            current, suspended_from = known  # as this batch last wrote it
        else:
            cursor.execute(f"SELECT status, suspended_from FROM {self.case_table} WHERE case_id = ?", (case_id,))  # noqa: S608
            row = cursor.fetchone()
            if row is None:
                raise LookupError(f"{self.case_table} has no case {case_id}: its Reported event was never applied")
            current, suspended_from = Status(row[0]), Status(row[1]) if row[1] else None
        status = status_after(
            type(event).__name__, current, suspended_from,
            passed=getattr(event, "passed", None), fixed=getattr(event, "fixed", None),
            stage=getattr(event, "stage", None),
        )  # fmt: skip
        if status is Status.SUSPENDED:
            suspended_from = current if current is not Status.SUSPENDED else suspended_from
        else:
            suspended_from = None
        # A resumed case goes back to where it stood; it does not enter that state anew.
        entered = status if status is not current and current is not Status.SUSPENDED else None
        cursor.execute(
            self._statement(changes, entered),
            {
                "case_id": case_id, "status": status.value,
                "suspended_from": suspended_from.value if suspended_from else None,
                "occurred_at": iso(event.occurred_at), "version": event.originator_version, "position": position,
                **fields,
            },
        )  # fmt: skip
        if memo is not None:
            memo[case_id] = (status, suspended_from)

    def _statement(self, changes: str, entered: Status | None) -> str:
        key = (changes, entered)
        statement = self._statements.get(key)
        if statement is None:
            parts = [changes, self.on_entering.get(entered, "") if entered else ""]
            sets = ", ".join(
                p for p in (*parts, "status = :status, suspended_from = :suspended_from", self.every_event) if p
            )
            statement = self._statements[key] = f"UPDATE {self.case_table} SET {sets} WHERE case_id = :case_id"  # noqa: S608
        return statement


def follow_every_case_event(process_event: Any) -> None:
    """Give a case view's ``process_event`` an overload for every work-order event it has none of its own for.

    Called at the end of the view's class body. Reported inserts the case's row, Registered and
    ExtensionGranted change columns every case view has (``CaseFold.reported``, ``registered``,
    ``extension_granted``); any other event only moves the case, where
    ``engine.lifecycle.status_after`` says. So an event type added to the aggregate is followed
    without a change to the views.
    """
    shared = {
        "Reported": CaseFold.reported,
        "Registered": CaseFold.registered,
        "ExtensionGranted": CaseFold.extension_granted,
        "Resumed": CaseFold.resumed,
    }
    registry = process_event.dispatcher.registry
    for name in event_names():
        kind = event_class(WorkOrder, name)
        if kind not in registry:
            process_event.register(kind, shared.get(name, CaseFold.move))


def routes(projections: Sequence[Projection]) -> dict[str, tuple[tuple[str, Handler], ...]]:
    """Which projections' overloads want an event of each topic: (name, handler) pairs, decided once per runner."""
    found: dict[str, tuple[tuple[str, Handler], ...]] = {}
    for projection in projections:
        for topic in projection.topics:
            found[topic] = (*found.get(topic, ()), (projection.name, projection.handler(resolve_topic(topic))))
    return found


@contextmanager
def remembering(projections: Sequence[Projection], cursor: Cursor) -> Iterator[None]:
    """Each projection keeps a memo for the transaction of ``cursor`` while the block runs (TransactionMemo)."""
    for projection in projections:
        projection.remember_in(cursor)
    try:
        yield
    finally:
        for projection in projections:
            projection.remember_in(None)


def chosen(projections: Sequence[Projection], name: str | None) -> list[Projection]:
    """The projection named ``name`` (every one, for None); an unknown name is refused with the names known."""
    found = [p for p in projections if name is None or p.name == name]
    if not found:
        raise UnknownReference("view", str(name), [p.name for p in projections])
    return found
