"""Scopes (辖区): which cases a reader may see, as SQL conditions over the case rows of the board and the queue."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.errors import InvalidCommand
from projections.projection import Cursor


@dataclass(frozen=True)
class Scope:
    """Which cases a reader may see: inside one node of the five-level tree, and/or assigned to one worker or unit."""

    division: str | None = None  # a division or grid code; None: everywhere
    worker: str | None = None  # only cases whose board row has worker == this
    unit: str | None = None  # only cases whose board row has unit == this

    def __post_init__(self) -> None:
        # An empty code would match every unassigned case: never what a jurisdiction means.
        for name in ("division", "worker", "unit"):
            if getattr(self, name) == "":
                raise InvalidCommand(f"scope.{name}", "is empty", f"a {name} code, or no {name} restriction")


EVERYWHERE = Scope()


@dataclass(frozen=True)
class ScopeFilter:
    """A scope as SQL: conditions to join with AND into a WHERE clause, and their named parameters."""

    conditions: tuple[str, ...] = ()
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def sql(self) -> str:
        """The conditions as one SQL expression ('TRUE' when the scope admits every case)."""
        return " AND ".join(self.conditions) or "TRUE"


NOTHING = "FALSE"
"""The condition of a scope inside a code the tree does not hold: it admits no case."""

_GRIDS_OF_DISTRICT = "SELECT code FROM division WHERE district = :scope_division AND level = 'grid'"
_GRIDS_OF_CITY = (
    "SELECT code FROM division WHERE level = 'grid' AND district IN "
    "(SELECT code FROM division WHERE parent = :scope_division AND level = 'district')"
)

# One condition per level of the tree, over a row's grid (and its community and street, where the
# rows carry them). A community and a street are matched on the row's own columns; the row has no
# district, so district and city go through the grids the division tree places under them. Their
# "grid || ''" keeps SQLite from looking each grid up in the board's grid index and sorting what it finds:
# a district or a city holds a large share of the cases, so reading the board in its own order and
# skipping the others reaches a page's limit soon (measured on 200k cases: 592 ms a page, against 3 ms).
_BY_PLACE: Mapping[str, str] = {
    "grid": "grid = :scope_division",
    "community": "community = :scope_division",
    "street": "street = :scope_division",
    "district": f"grid || '' IN ({_GRIDS_OF_DISTRICT})",
    "city": f"grid || '' IN ({_GRIDS_OF_CITY})",
}
_BY_GRID: Mapping[str, str] = {
    **_BY_PLACE,
    "community": "grid IN (SELECT code FROM division WHERE parent = :scope_division AND level = 'grid')",
    "street": "grid IN (SELECT code FROM division WHERE street = :scope_division AND level = 'grid')",
}


def scope_filter(cursor: Cursor, scope: Scope, *, places: bool = True) -> ScopeFilter:
    """The SQL of ``scope`` over case rows with columns ``grid``, ``worker``, ``unit`` (and ``community``,
    ``street`` when ``places``: ``board_case`` and the ``board`` view have them, ``queue_case`` does not).

    A case is inside division D when D is its grid, its community, its street, its grid's district
    or the city that district belongs to (by the division tree). D's level is looked up once, here,
    in the caller's snapshot, so the query gets one plain condition; a code the tree does not hold
    admits nothing.
    """
    conditions: list[str] = []
    params: dict[str, str] = {}
    if scope.division is not None:
        cursor.execute("SELECT level FROM division WHERE code = ?", (scope.division,))
        row = cursor.fetchone()
        by_level = _BY_PLACE if places else _BY_GRID
        condition = by_level.get(row[0]) if row is not None else None
        conditions.append(condition or NOTHING)
        params["scope_division"] = scope.division
    if scope.worker is not None:
        conditions.append("worker = :scope_worker")
        params["scope_worker"] = scope.worker
    if scope.unit is not None:
        conditions.append("unit = :scope_unit")
        params["scope_unit"] = scope.unit
    return ScopeFilter(tuple(conditions), params)
