"""The 四度 evaluation of grid workers (网格员四度考核) for a period, from the four_degrees view."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

from engine.working_time import WorkingCalendar, china_calendar
from projections.evaluation.four_degrees import WORKER_COUNTS
from projections.evaluation.places import period_days, within_condition
from projections.evaluation.scoring import DEGREES, INPUTS, Degree, degrees, overall

if TYPE_CHECKING:
    from projections.kpi_queries import Period
    from projections.store import Views

_SOURCES = {"patrol": "patrol_cases", "resident": "resident_cases", "app": "app_cases", "hotline": "hotline_cases"}
"""The case sources 四度 reads, and the input each feeds (department and sensor cases say nothing of the worker)."""


@dataclass(frozen=True)
class WorkerEvaluation:
    """One grid worker's 四度 in one period: each degree with its parts and inputs, the overall score and grade."""

    worker: str
    name: str
    grids: tuple[str, ...]
    period: str
    familiarity: Degree
    trust: Degree
    delivery: Degree
    satisfaction: Degree
    score: float | None
    grade: str

    def degree(self, name: str) -> Degree:
        """A degree by its name in DEGREES."""
        found: Degree = getattr(self, name)
        return found


def workdays(period: Period, calendar: WorkingCalendar, today: date | None = None) -> int:
    """Working days of the period (up to and including ``today``, for a period still running)."""
    end = period.end if today is None else min(period.end, today + timedelta(days=1))
    return sum(calendar.is_workday(period.start + timedelta(days=n)) for n in range((end - period.start).days))


def evaluate_workers(
    store: Views,
    period: Period,
    *,
    within: str | None = None,
    calendar: WorkingCalendar | None = None,
    today: date | None = None,
) -> list[WorkerEvaluation]:
    """四度 of every grid worker with a grid (inside ``within``, a grid or division code, if given), best first.

    ``calendar`` says which days are working days (default: mainland China's); ``today`` cuts a running
    period's working days short, so a worker is not marked down for days still to come.
    """
    condition, params = within_condition("g", within)
    days = period_days(period)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(INPUTS, 0))
    with store.reading() as cursor:
        cursor.execute(
            # Every grid of each worker with a grid inside ``within``.
            "SELECT p.worker, p.grid, COALESCE(w.name, '') AS name FROM fd_post p "  # noqa: S608
            "LEFT JOIN fd_worker w ON w.code = p.worker "
            "WHERE p.worker IN (SELECT q.worker FROM fd_post q LEFT JOIN fd_grid g ON g.code = q.grid "
            f"WHERE {condition}) ORDER BY p.worker, p.grid",
            params,
        )
        posts: dict[str, list[str]] = defaultdict(list)
        names: dict[str, str] = {}
        for row in cursor.fetchall():
            posts[row["worker"]].append(row["grid"])
            names[row["worker"]] = row["name"]
        # Patrols of the worker's own grids only: a patrol elsewhere (standing in for a colleague) is not familiarity.
        cursor.execute(
            "SELECT d.worker, COUNT(DISTINCT CASE WHEN d.patrols > 0 THEN d.day END) AS patrol_days, "
            "SUM(d.patrols) AS patrols, SUM(d.checkpoints) AS checkpoints FROM fd_patrol_day d "
            "JOIN fd_post p ON p.worker = d.worker AND p.grid = d.grid "
            "WHERE d.day >= :first AND d.day < :end GROUP BY d.worker",
            days,
        )
        for row in cursor.fetchall():
            counts[row["worker"]].update(
                patrol_days=row["patrol_days"], patrols=row["patrols"], checkpoints=row["checkpoints"]
            )
        cursor.execute(
            "SELECT p.worker, s.source, SUM(s.cases) AS cases FROM fd_post p JOIN fd_grid_day s ON s.grid = p.grid "
            "WHERE s.day >= :first AND s.day < :end GROUP BY p.worker, s.source",
            days,
        )
        for row in cursor.fetchall():
            if row["source"] in _SOURCES:
                counts[row["worker"]][_SOURCES[row["source"]]] = row["cases"]
        sums = ", ".join(f"SUM({column}) AS {column}" for column in WORKER_COUNTS)
        cursor.execute(
            f"SELECT worker, {sums} FROM fd_worker_day WHERE day >= :first AND day < :end GROUP BY worker",  # noqa: S608
            days,
        )
        for row in cursor.fetchall():
            counts[row["worker"]].update({column: row[column] for column in WORKER_COUNTS})
    working = workdays(period, calendar or china_calendar(), today)
    found = []
    for worker, grids in posts.items():
        inputs = counts[worker] | {"workdays": working}
        four = degrees(inputs)
        value, letter = overall(four)
        found.append(
            WorkerEvaluation(
                worker,
                names[worker],
                tuple(grids),
                period.label,
                four["familiarity"],
                four["trust"],
                four["delivery"],
                four["satisfaction"],
                value,
                letter,
            )
        )
    found.sort(key=lambda e: (e.score is None, -(e.score or 0.0), e.worker))
    return found


__all__ = ["DEGREES", "WorkerEvaluation", "evaluate_workers", "workdays"]
