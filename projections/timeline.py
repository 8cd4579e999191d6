"""The case timeline (办理过程): every event of every case, in order, with who did it and why."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.dispatch import singledispatchmethod

from engine.work_order import WorkOrder, event_names
from projections.projection import Cursor, Projection, ViewTable, event_class, iso, originator_key

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS timeline_event ("
    "case_id TEXT NOT NULL, "
    "version INTEGER NOT NULL, "
    "event_type TEXT NOT NULL, "
    "occurred_at TEXT NOT NULL, "
    "recorded_at TEXT NOT NULL, "
    "actor TEXT NOT NULL, "
    "details TEXT NOT NULL, "
    "position INTEGER NOT NULL, "
    "PRIMARY KEY (case_id, version)"
    ")",
)

_INSERT = "INSERT INTO timeline_event VALUES (?, ?, ?, ?, ?, ?, ?, ?)"

_ENVELOPE = frozenset({"originator_id", "originator_version", "originator_topic", "timestamp", "occurred_at", "actor"})
"""Fields every event has; they get columns of their own, the rest go into ``details``."""


def _plain(value: object) -> str:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, UUID):
        return str(value)
    raise TypeError(f"cannot put a {type(value).__name__} into a timeline's details")


_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_plain)
"""What ``json.dumps`` with these options builds anew for every call: built once (the same text, a quarter cheaper)."""


def details(event: Any) -> str:
    """The event's own fields (reason, level, deadline, unit, worker, policy, inputs …) as JSON text."""
    fields = {key: value for key, value in vars(event).items() if key not in _ENVELOPE}
    return _ENCODER.encode(fields)


class CaseTimeline(Projection):
    """办理过程: the audit trail of one case, one row per event."""

    name = "case_timeline"
    tables = (ViewTable("timeline_event", ("case_id", "version")),)
    schema = SCHEMA

    @singledispatchmethod
    def process_event(self, event: object, position: int, cursor: Cursor) -> None:
        """Fold one event into the timelines."""

    def _record(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(
            _INSERT,
            (
                originator_key(event), event.originator_version, type(event).__name__,
                iso(event.occurred_at), iso(event.timestamp), event.actor, details(event), position,
            ),
        )  # fmt: skip

    # Every work-order event belongs on the timeline: one overload serves them all, so an event
    # type added to the aggregate appears here without touching this module.
    for _name in event_names():
        process_event.register(event_class(WorkOrder, _name), _record)
    del _name
