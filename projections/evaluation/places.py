"""What the evaluation views share: a grid map of their own, local days, and filters by division and period."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.errors import InvalidCommand
from projections.divisions import grid_prefix
from projections.flow import local_day
from projections.projection import Cursor, originator_key

if TYPE_CHECKING:
    from projections.kpi_queries import Period

__all__ = ["LEVELS", "GridMap", "level_column", "local_day", "period_days", "within_condition"]

LEVELS = ("grid", "community", "street", "district")
"""The levels an evaluation groups or filters by, from the grid's own Grid.Drawn (the city is not on it)."""


class GridMap:
    """A view's own copy of the grid map (Grid.Drawn): a projection may not read another view's tables.

    A grid's later events carry its aggregate id, not its code, hence ``aggregate_id``. Cases and
    patrols name the grid by code, so a view keeps their counts by grid code and joins this map only
    when queried: from Kafka a case may come before its grid, and the rows must not depend on it.
    """

    def __init__(self, table: str) -> None:
        self.table = table
        self.schema = (
            f"CREATE TABLE IF NOT EXISTS {table} ("
            "code TEXT PRIMARY KEY, aggregate_id TEXT NOT NULL UNIQUE, community TEXT NOT NULL, "
            "street TEXT NOT NULL, district TEXT NOT NULL, drawn_day TEXT NOT NULL, retired_day TEXT)"
        )
        self._insert = (
            f"INSERT INTO {table} (code, aggregate_id, community, street, district, drawn_day) "  # noqa: S608
            "VALUES (?, ?, ?, ?, ?, ?)"
        )
        self._retire = f"UPDATE {table} SET retired_day = ? WHERE aggregate_id = ?"  # noqa: S608
        self._code = f"SELECT code FROM {table} WHERE aggregate_id = ?"  # noqa: S608

    def drawn(self, event: Any, cursor: Cursor) -> None:
        """Grid.Drawn: the grid and the divisions it lies in, and the local day it came into force."""
        cursor.execute(
            self._insert,
            (
                event.code,
                originator_key(event),
                event.community,
                event.street,
                event.district,
                local_day(event.occurred_at),
            ),
        )

    def retired(self, event: Any, cursor: Cursor) -> None:
        """Grid.Retired: replaced after a redraw; in force up to and including that day."""
        cursor.execute(self._retire, (local_day(event.occurred_at), originator_key(event)))

    def code_of(self, event: Any, cursor: Cursor) -> str:
        """The code of the grid a later Grid event belongs to (its Drawn came first: same aggregate)."""
        cursor.execute(self._code, (originator_key(event),))
        row = cursor.fetchone()
        if row is None:
            raise LookupError(f"{self.table} has no grid {event.originator_id}: its Drawn event was never applied")
        return str(row[0])


def level_column(level: str) -> str:
    """The grid map's column for a level; another level is refused with the levels allowed."""
    if level not in LEVELS:
        raise InvalidCommand("level", f"{level!r} is not an evaluation level", ", ".join(LEVELS))
    return "code" if level == "grid" else level


def within_condition(alias: str, within: str | None) -> tuple[str, dict[str, str]]:
    """SQL admitting the grids (``alias`` is the grid map) inside a division or grid code; 'TRUE' for None."""
    if within is None:
        return "TRUE", {}
    if not within.isdigit():
        raise InvalidCommand("within", f"{within!r} is not a division code", "the digits of a grid or division code")
    # Grid codes begin with the codes of the places above them (a city's: its code without the trailing 00).
    return f"{alias}.code LIKE :within", {"within": f"{grid_prefix(within)}%"}


def period_days(period: Period) -> dict[str, str]:
    """The period as named SQL parameters over local-day text: ``:first <= day < :end``."""
    return {"first": period.start.isoformat(), "end": period.end.isoformat()}
