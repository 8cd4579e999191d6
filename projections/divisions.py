"""The division tree (行政区划与网格): every city, district, street, community and grid, and the reads over it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventsourcing.dispatch import singledispatchmethod

from engine.errors import InvalidCommand
from engine.reference import LEVELS, Division, Grid
from projections.projection import Cursor, Projection, ViewTable, event_class

if TYPE_CHECKING:
    from projections.store import Views

GRID = "grid"
ALL_LEVELS = (*LEVELS, GRID)
"""The five levels of the tree, top down: 市, 区/县, 街道/乡镇, 社区/村, 网格."""

# One row per aggregate, holding only what that aggregate's own events carry: read from Kafka,
# divisions and grids come on different topics in no agreed order, so a row that copied from
# another (a community's district, from its street's row) would depend on which came first.
# So a community names its street (its parent) but not its district; a grid names all three.
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS division ("
    "code TEXT PRIMARY KEY, "
    "aggregate_id TEXT NOT NULL UNIQUE, "
    "name TEXT NOT NULL, "
    "level TEXT NOT NULL, "
    "parent TEXT, "
    "district TEXT, "
    "street TEXT, "
    "community TEXT, "
    "households INTEGER, "
    "boundary TEXT, "
    "retired INTEGER NOT NULL DEFAULT 0, "
    "position INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS division_by_level ON division (level, code)",
    "CREATE INDEX IF NOT EXISTS division_by_parent ON division (parent, code)",
    "CREATE INDEX IF NOT EXISTS division_by_street ON division (street)",
    "CREATE INDEX IF NOT EXISTS division_by_district ON division (district)",
)

_INSERT = (
    "INSERT INTO division (code, aggregate_id, name, level, parent, district, street, community, households, "
    "boundary, position) VALUES (:code, :aggregate_id, :name, :level, :parent, :district, :street, :community, "
    ":households, :boundary, :position)"
)


class DivisionTree(Projection):
    """行政区划与网格: the five-level tree a case's place and a reader's jurisdiction are named in."""

    name = "division_tree"
    tables = (ViewTable("division", ("code",)),)
    schema = SCHEMA

    @singledispatchmethod
    def process_event(self, event: object, position: int, cursor: Cursor) -> None:
        """Fold one event into the tree."""

    @process_event.register(event_class(Division, "Established"))
    def _established(self, event: Any, position: int, cursor: Cursor) -> None:
        parent = event.parent or None
        cursor.execute(
            _INSERT,
            {
                "code": event.code, "aggregate_id": str(event.originator_id), "name": event.name,
                "level": event.level, "parent": parent,
                "district": parent if event.level == "street" else None,
                "street": parent if event.level == "community" else None,
                "community": None, "households": None, "boundary": None, "position": position,
            },
        )  # fmt: skip

    @process_event.register(event_class(Grid, "Drawn"))
    def _drawn(self, event: Any, position: int, cursor: Cursor) -> None:
        cursor.execute(
            _INSERT,
            {
                "code": event.code, "aggregate_id": str(event.originator_id), "name": event.name, "level": GRID,
                "parent": event.community, "district": event.district, "street": event.street,
                "community": event.community, "households": event.households, "boundary": event.boundary,
                "position": position,
            },
        )  # fmt: skip

    @process_event.register(event_class(Grid, "Redrawn"))
    def _redrawn(self, event: Any, position: int, cursor: Cursor) -> None:
        """重新划分: the grid keeps its code; households and boundary change."""
        self._update(
            event, cursor, "households = :households, boundary = :boundary, position = :position",
            households=event.households, boundary=event.boundary, position=position,
        )  # fmt: skip

    @process_event.register(event_class(Grid, "Retired"))
    def _retired(self, event: Any, position: int, cursor: Cursor) -> None:
        self._update(event, cursor, "retired = 1, position = :position", position=position)

    @staticmethod
    def _update(event: Any, cursor: Cursor, changes: str, **fields: Any) -> None:
        # A grid's later events carry its id, not its code; its Drawn came first (one aggregate, one partition).
        cursor.execute(
            f"UPDATE division SET {changes} WHERE aggregate_id = :aggregate_id RETURNING code",  # noqa: S608
            {"aggregate_id": str(event.originator_id), **fields},
        )
        if cursor.fetchone() is None:
            raise LookupError(f"division has no grid {event.originator_id}: its Drawn event was never applied")


@dataclass(frozen=True)
class DivisionRow:
    """One node of the tree: a division or a grid, with the ancestors its own events name."""

    code: str
    name: str
    level: str
    parent: str | None
    district: str | None
    street: str | None
    community: str | None
    households: int | None
    boundary: str | None
    """The grid's boundary, GeoJSON Polygon geometry as text (None for a division)."""
    retired: bool


def _row(row: Any) -> DivisionRow:
    return DivisionRow(
        code=row["code"], name=row["name"], level=row["level"], parent=row["parent"], district=row["district"],
        street=row["street"], community=row["community"], households=row["households"], boundary=row["boundary"],
        retired=bool(row["retired"]),
    )  # fmt: skip


def division(store: Views, code: str) -> DivisionRow | None:
    """The division or grid with this code (None for a code the tree does not hold)."""
    with store.reading() as cursor:
        cursor.execute("SELECT * FROM division WHERE code = ?", (code,))
        row = cursor.fetchone()
    return None if row is None else _row(row)


def divisions(store: Views, *, level: str | None = None, parent: str | None = None) -> list[DivisionRow]:
    """The divisions and grids of one level and/or under one parent (its children only), in code order."""
    where: list[str] = []
    params: dict[str, str] = {}
    if level is not None:
        if level not in ALL_LEVELS:
            raise InvalidCommand("level", f"{level!r} is not a level of the division tree", ", ".join(ALL_LEVELS))
        where.append("level = :level")
        params["level"] = level
    if parent is not None:
        where.append("parent = :parent")
        params["parent"] = parent
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    with store.reading() as cursor:
        cursor.execute(f"SELECT * FROM division {clause}ORDER BY code", params)  # noqa: S608 - constants
        rows = cursor.fetchall()
    return [_row(row) for row in rows]


def grid_prefix(code: str) -> str:
    """The prefix of every grid code under ``code``: a grid, community or street code is its own; a six-digit
    division code loses its trailing "00" pairs (GB/T 2260: province 640000, city 640200, county 640202), so a city
    holds the grids of all its districts."""
    if len(code) == 6:
        while code.endswith("00"):
            code = code[:-2]
    return code
