"""Patrol coverage (巡查覆盖): patrols, checkpoints and findings per grid per local day, and the grids not visited."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from eventsourcing.dispatch import singledispatchmethod

from engine.patrol import Patrol
from engine.reference import Grid
from projections.evaluation.places import GridMap, local_day, period_days, within_condition
from projections.projection import Cursor, Projection, ViewTable, event_class, iso, originator_key

if TYPE_CHECKING:
    from projections.kpi_queries import Period
    from projections.store import Views

COUNTS = ("patrols", "checkpoints", "findings", "ended", "minutes")
"""A day's counts of one worker in one grid: patrols started, checkpoints visited (打卡), findings (发现),
patrols ended, and the minutes walked by the patrols started that day (start to end)."""

GRIDS = GridMap("coverage_grid")

SCHEMA = (
    GRIDS.schema,
    # A patrol's later events carry only its id: where and by whom it walks, and when it started.
    "CREATE TABLE IF NOT EXISTS coverage_patrol ("
    "patrol_id TEXT PRIMARY KEY, worker TEXT NOT NULL, grid TEXT NOT NULL, started_at TEXT NOT NULL, "
    "day TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS coverage_day ("
    "day TEXT NOT NULL, grid TEXT NOT NULL, worker TEXT NOT NULL, "
    + ", ".join(f"{column} INTEGER NOT NULL DEFAULT 0" for column in COUNTS)
    + ", PRIMARY KEY (day, grid, worker)) WITHOUT ROWID",
)

# Columns named with their table: PostgreSQL, unlike SQLite, refuses a bare name that excluded also has.
_ADD = ", ".join(f"{column} = coverage_day.{column} + excluded.{column}" for column in COUNTS)


def _count_statement(column: str, minutes: str = "0") -> str:
    """Add one to ``column`` of the patrol's grid and worker on ``:day`` (a new row starts at zeros)."""
    values = dict.fromkeys(COUNTS, "0") | {column: "1", "minutes": minutes}
    return (
        f"INSERT INTO coverage_day (day, grid, worker, {', '.join(COUNTS)}) "  # noqa: S608 - constants only
        f"SELECT {':day' if column != 'ended' else 'day'}, grid, worker, {', '.join(values.values())} "
        "FROM coverage_patrol WHERE patrol_id = :patrol_id "
        f"ON CONFLICT (day, grid, worker) DO UPDATE SET {_ADD}"
    )


# An ended patrol adds its minutes to the day it started, so a patrol's length is counted once.
_MINUTES = "CAST(ROUND((julianday(:at) - julianday(started_at)) * 1440) AS INTEGER)"
_STATEMENTS = {
    "checkpoints": _count_statement("checkpoints"),
    "findings": _count_statement("findings"),
    "ended": _count_statement("ended", _MINUTES),
}


class PatrolCoverage(Projection):
    """巡查覆盖: where grid workers walked each day, by the day it happened (occurred time).

    A checkpoint or finding uploaded late (a phone that was offline) counts on the day it occurred.
    The grids come from Grid.Drawn and Retired; the patrols name their grid by code, so the two are
    joined only when queried, whatever order their topics arrive in.
    """

    name = "patrol_coverage"
    tables = (
        ViewTable("coverage_grid", ("code",)),
        ViewTable("coverage_patrol", ("patrol_id",)),
        ViewTable("coverage_day", ("day", "grid", "worker")),
    )
    schema = SCHEMA

    @singledispatchmethod
    def process_event(self, event: object, position: int, cursor: Cursor) -> None:
        """Fold one event into the coverage."""

    @process_event.register(event_class(Grid, "Drawn"))
    def _drawn(self, event: Any, position: int, cursor: Cursor) -> None:
        GRIDS.drawn(event, cursor)

    @process_event.register(event_class(Grid, "Retired"))
    def _retired(self, event: Any, position: int, cursor: Cursor) -> None:
        GRIDS.retired(event, cursor)

    @process_event.register(event_class(Patrol, "Started"))
    def _started(self, event: Any, position: int, cursor: Cursor) -> None:
        day = local_day(event.occurred_at)
        cursor.execute(
            "INSERT INTO coverage_patrol (patrol_id, worker, grid, started_at, day) VALUES (?, ?, ?, ?, ?)",
            (originator_key(event), event.worker, event.grid, iso(event.occurred_at), day),
        )
        cursor.execute(
            "INSERT INTO coverage_day (day, grid, worker, patrols) VALUES (?, ?, ?, 1) "
            "ON CONFLICT (day, grid, worker) DO UPDATE SET patrols = coverage_day.patrols + 1",
            (day, event.grid, event.worker),
        )

    @process_event.register(event_class(Patrol, "CheckpointVisited"))
    def _visited(self, event: Any, position: int, cursor: Cursor) -> None:
        self._count(event, cursor, "checkpoints")

    @process_event.register(event_class(Patrol, "FindingReported"))
    def _finding(self, event: Any, position: int, cursor: Cursor) -> None:
        self._count(event, cursor, "findings")

    @process_event.register(event_class(Patrol, "Ended"))
    def _ended(self, event: Any, position: int, cursor: Cursor) -> None:
        self._count(event, cursor, "ended")

    @staticmethod
    def _count(event: Any, cursor: Cursor, column: str) -> None:
        parameters = {"day": local_day(event.occurred_at), "patrol_id": originator_key(event)}
        if column == "ended":
            parameters["at"] = iso(event.occurred_at)
        cursor.execute(_STATEMENTS[column], parameters)
        if cursor.rowcount == 0:
            raise LookupError(f"coverage_patrol has no patrol {event.originator_id}: its Started was never applied")


# -- queries ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridCoverage:
    """One grid in a period: how often it was walked, and by how many workers."""

    grid: str
    community: str
    street: str
    patrols: int
    checkpoints: int
    findings: int
    minutes: int
    patrol_days: int
    """Local days with at least one patrol started or checkpoint visited in the grid."""
    workers: int

    @property
    def visited(self) -> bool:
        return self.patrols > 0 or self.checkpoints > 0


@dataclass(frozen=True)
class Coverage:
    """Patrol coverage of a period: every grid in force in it, visited or not."""

    period: str
    within: str | None
    grids: list[GridCoverage]
    """Every grid in force in the period (drawn by its end, not retired before its start), most visited first."""

    @property
    def unvisited(self) -> list[GridCoverage]:
        """The grids in force in the period that no patrol started in and no checkpoint was visited in."""
        return [g for g in self.grids if not g.visited]

    @property
    def visited_count(self) -> int:
        return sum(g.visited for g in self.grids)

    @property
    def rate(self) -> float | None:
        """巡查覆盖率 = grids visited / grids in force; None when no grid was in force."""
        return self.visited_count / len(self.grids) if self.grids else None


def coverage(store: Views, period: Period, *, within: str | None = None) -> Coverage:
    """Patrol coverage of each grid in force in ``period`` (inside ``within``, a grid or division code, if given).

    Patrols and checkpoints of a grid the map does not hold (not drawn yet, from Kafka) are left out.
    """
    condition, params = within_condition("g", within)
    sql = (
        "SELECT g.code, g.community, g.street, "  # noqa: S608 - condition built from constants
        "COALESCE(SUM(d.patrols), 0) AS patrols, COALESCE(SUM(d.checkpoints), 0) AS checkpoints, "
        "COALESCE(SUM(d.findings), 0) AS findings, COALESCE(SUM(d.minutes), 0) AS minutes, "
        "COUNT(DISTINCT CASE WHEN d.patrols > 0 OR d.checkpoints > 0 THEN d.day END) AS patrol_days, "
        "COUNT(DISTINCT CASE WHEN d.patrols > 0 OR d.checkpoints > 0 THEN d.worker END) AS workers "
        "FROM coverage_grid g LEFT JOIN coverage_day d ON d.grid = g.code AND d.day >= :first AND d.day < :end "
        f"WHERE g.drawn_day < :end AND (g.retired_day IS NULL OR g.retired_day >= :first) AND {condition} "
        "GROUP BY g.code ORDER BY patrol_days DESC, checkpoints DESC, g.code"
    )
    with store.reading() as cursor:
        cursor.execute(sql, {**period_days(period), **params})
        grids = [
            GridCoverage(
                r["code"],
                r["community"],
                r["street"],
                r["patrols"],
                r["checkpoints"],
                r["findings"],
                r["minutes"],
                r["patrol_days"],
                r["workers"],
            )
            for r in cursor.fetchall()
        ]
    return Coverage(period.label, within, grids)
