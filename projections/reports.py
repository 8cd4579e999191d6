"""The KPI report (考核报表): a period's ranked units, the trend of the best, the grids most overdue, as data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from matplotlib.figure import Figure

from engine.errors import GridloopError, UnknownReference
from projections import kpi_queries
from projections.divisions import division
from projections.kpi_queries import LEVELS, RATE_NAMES, KpiRow, Period
from projections.reports_charts import overdue_figure, ranking_figure, said, trend_figure

if TYPE_CHECKING:
    from projections.store import Views

LOCAL = ZoneInfo("Asia/Shanghai")
ON_TIME = ("on-time closure rate", "按期结案率")
"""The rate the trend chart follows (English, Chinese): found in RATE_NAMES by its Chinese label."""
OVERDUE = "overdue"
"""The grid-level count the overdue chart draws."""
TREND_UNITS = 5
"""How many of the best units the trend chart follows."""
TREND_PERIODS = 6
"""How many periods the trend covers by default (the report's own and the ones before it)."""
MOST_OVERDUE = 15
"""How many grids the overdue chart shows at most."""
RANKING_BARS = 40
"""A ranking of more units shows the best and the worst half of this many (547 bars would say nothing)."""
MAX_PERIODS = 36
"""The longest trend a report or the API draws."""
CHARTS = ("ranking", "trend", "overdue")
"""The charts of a report, by name."""
PERIOD_FORMS = ("a month 2026-11", "an ISO week 2026-W47", "a day 2026-11-23")
"""What a period may be written as (as kpi_queries.parse_period reads it)."""


class ReportParameterError(GridloopError):
    """A report asked for with a level, period or count gridloop does not have; names what is allowed."""

    def __init__(self, parameter: str, value: object, allowed: Sequence[str]) -> None:
        self.parameter = parameter
        self.value = value
        self.allowed = tuple(allowed)
        super().__init__(f"{parameter} {value!r} is not allowed; allowed: {', '.join(self.allowed)}")


def checked_level(level: str) -> str:
    if level not in LEVELS:
        raise ReportParameterError("level", level, LEVELS)
    return level


def checked_period(text: str) -> Period:
    try:
        return kpi_queries.parse_period(text)
    except ValueError:
        raise ReportParameterError("period", text, PERIOD_FORMS) from None


def checked_count(count: int, parameter: str = "periods") -> int:
    if not 1 <= count <= MAX_PERIODS:
        raise ReportParameterError(parameter, count, (f"1 to {MAX_PERIODS}",))
    return count


def current_period(now: datetime) -> Period:
    """The month ``now`` falls in (local time): the period a trend ends with when none is named."""
    return kpi_queries.parse_period(now.astimezone(LOCAL).strftime("%Y-%m"))


@dataclass(frozen=True)
class Report:
    """One level's KPI rows for one period, ranked best first, inside one division (or everywhere)."""

    level: str
    period: Period
    within: str | None
    rows: list[KpiRow]

    @property
    def ranks(self) -> list[int | None]:
        """Competition ranks (1, 2, 2, 4) by score; a unit without a score has no rank."""
        ranks: list[int | None] = []
        for index, row in enumerate(self.rows):
            if row.score is None:
                ranks.append(None)
            elif index and self.rows[index - 1].score == row.score:
                ranks.append(ranks[-1])
            else:
                ranks.append(index + 1)
        return ranks


def report(store: Views, level: str, period: str, within: str | None = None) -> Report:
    """The ranked KPI rows of ``level`` for ``period`` (text such as 2026-11), inside ``within`` when given."""
    parsed = checked_period(period)
    rows = kpi_queries.kpi_table(store, checked_level(level), parsed, within=known_within(store, within))
    return Report(level, parsed, within, list(rows))


def checked_within(within: str | None) -> str | None:
    if within is not None and not within.isdigit():
        raise ReportParameterError("within", within, ("the digits of a division or grid code",))
    return within


def known_within(store: Views, within: str | None) -> str | None:
    """``within`` if the division tree holds it (a report inside a code nobody drew would be silently empty)."""
    if within is None:
        return None
    checked_within(within)
    if division(store, within) is None:
        raise UnknownReference("division", within)
    return within


def trend(
    store: Views, made: Report, codes: Sequence[str], count: int
) -> tuple[list[Period], dict[str, list[KpiRow | None]]]:
    """The ``count`` periods ending with the report's (oldest first) and each unit's row in them, inside the
    report's ``within`` (None: no activity then). One table per period, so the numbers are the ranking's own."""
    periods = trend_periods(made.period, checked_count(count))
    series: dict[str, list[KpiRow | None]] = {code: [] for code in codes}
    for period in periods:
        table = {row.code: row for row in kpi_queries.kpi_table(store, made.level, period, within=made.within)}
        for code in codes:
            series[code].append(table.get(code))
    return periods, series


def trend_periods(period: Period, count: int) -> list[Period]:
    """The ``count`` periods ending with ``period``, oldest first."""
    return kpi_queries.periods_before(period, count)


def most_overdue(store: Views, period: Period, within: str | None, top: int = MOST_OVERDUE) -> list[KpiRow]:
    """The grids with the most overdue cases in ``period`` (none with zero), most first, then by code."""
    rows = kpi_queries.kpi_table(store, "grid", period, within=checked_within(within))
    late = [row for row in rows if row.counts.get(OVERDUE, 0) > 0]
    return sorted(late, key=lambda row: (-row.counts[OVERDUE], row.code))[:top]


def ranking_rows(rows: Sequence[KpiRow]) -> list[KpiRow]:
    """The rows the ranking chart shows: all of them, or the best and the worst when there are too many."""
    if len(rows) <= RANKING_BARS:
        return list(rows)
    half = RANKING_BARS // 2
    return [*rows[:half], *rows[-half:]]


def on_time_rate() -> str:
    """The key of 按期结案率 in RATE_NAMES."""
    return next(key for key, label in RATE_NAMES.items() if label == ON_TIME[1])


def figures(
    store: Views, made: Report, periods: int = TREND_PERIODS, names: Sequence[str] = CHARTS
) -> dict[str, Figure]:
    """The report's charts by name (all of them, or those in ``names``): the ranking, the best units' trend, the
    grids most overdue."""
    unknown = [name for name in names if name not in CHARTS]
    if unknown:
        raise ReportParameterError("chart", unknown[0], CHARTS)
    where = f" in {made.within}" if made.within else ""
    drawn: dict[str, Figure] = {}
    if "ranking" in names:
        shown = ranking_rows(made.rows)
        part = "" if len(shown) == len(made.rows) else f" (best and worst {len(shown) // 2} of {len(made.rows)})"
        title = f"{made.level} {said('ranking', '排名')} {made.period.label}{where}{part}"
        drawn["ranking"] = ranking_figure(shown, title)
    if "trend" in names:
        best = [row.code for row in made.rows if row.score is not None][:TREND_UNITS]
        spans, series = trend(store, made, best, periods)
        title = f"{made.level} {said('trend', '趋势')}: best {len(best)}{where}"
        drawn["trend"] = trend_figure([p.label for p in spans], series, on_time_rate(), ON_TIME, title)
    if "overdue" in names:
        title = f"{said('overdue by grid', '网格超期')} {made.period.label}{where}"
        drawn["overdue"] = overdue_figure(most_overdue(store, made.period, made.within), OVERDUE, title)
    return drawn


def period_json(period: Period) -> dict[str, str]:
    return {
        "label": period.label,
        "kind": period.kind,
        "start": period.start.isoformat(),
        "end": period.end.isoformat(),
    }


def rates_json() -> list[dict[str, str]]:
    """The rates in display order, with their Chinese labels."""
    return [{"key": key, "label": label} for key, label in RATE_NAMES.items()]


def row_json(row: KpiRow) -> dict[str, Any]:
    return {
        "code": row.code,
        "name": row.name,
        "score": row.score,
        "grade": row.grade,
        "rates": dict(row.rates),
        "counts": dict(row.counts),
    }


def report_json(made: Report) -> dict[str, Any]:
    """The report as the API and `gridloop report --json` give it: the same numbers, the same shape."""
    return {
        "level": made.level,
        "period": period_json(made.period),
        "within": made.within,
        "rates": rates_json(),
        "rows": [{"rank": rank, **row_json(row)} for rank, row in zip(made.ranks, made.rows, strict=True)],
    }


def trend_json(level: str, code: str, periods: Sequence[Period], rows: Sequence[KpiRow]) -> dict[str, Any]:
    """One unit's trend: its row for each of ``periods`` (oldest first)."""
    return {
        "level": level,
        "code": code,
        "name": next((row.name for row in rows if row.name), ""),
        "rates": rates_json(),
        "periods": [{"period": period_json(p), **row_json(row)} for p, row in zip(periods, rows, strict=True)],
    }
