"""`gridloop report`: a level's KPI ranking for one period on the terminal, and its charts as PNG and SVG files."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from ops.cli_support import fail_cleanly, out
from ops.config import Settings
from ops.history_cli import reading_views, views_option
from ops.report.charts import chart_files
from projections import reports
from projections.kpi_queries import LEVELS, RATE_NAMES

MAIN_RATES = (
    "closure_rate",
    "on_time_closure_rate",
    "handling_rate",
    "on_time_handling_rate",
    "rework_rate",
    "return_rate",
    "timely_accept_rate",
    "satisfaction_rate",
)
"""The rates the table shows (every rate is in --json): the region's, the handlers' and the residents' view."""


@click.command(name="report")
@click.option("--level", required=True, help=f"The units ranked: {', '.join(LEVELS)}.")
@click.option("--period", required=True, help="A month 2026-11, an ISO week 2026-W47 or a day 2026-11-23.")
@click.option("--within", default=None, help="Only units inside this division or grid code.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the charts are written (default: <data-dir>/reports).",
)
@click.option(
    "--trend",
    "trend_periods",
    type=int,
    default=reports.TREND_PERIODS,
    show_default=True,
    help=f"Periods the trend chart covers, ending with --period (1 to {reports.MAX_PERIODS}).",
)
@click.option("--json", "as_json", is_flag=True, help="The numbers as JSON (the API's /v1/reports/kpi answer).")
@views_option
@click.pass_obj
@fail_cleanly
def report_command(
    settings: Settings,
    level: str,
    period: str,
    within: str | None,
    out_dir: Path | None,
    trend_periods: int,
    as_json: bool,
    views_path: Path | None,
) -> None:
    """考核排名: rank the units of a level for a period; write the ranking, trend and overdue-by-grid charts."""
    reports.checked_level(level)
    reports.checked_period(period)
    reports.checked_count(trend_periods, "--trend")
    with reading_views(settings, views_path) as views:
        made = reports.report(views, level, period, within)
        figures = reports.figures(views, made, trend_periods)
    stem = f"{level}-{made.period.label}" + (f"-{within}" if within else "")
    written = chart_files(figures, out_dir or settings.data_dir / "reports", stem)
    if as_json:
        body = reports.report_json(made)
        click.echo(json.dumps({**body, "charts": [str(path) for path in written]}, ensure_ascii=False))
        return
    _print_table(made)
    for path in written:
        out.print(f"chart: {path}")


def _print_table(made: reports.Report) -> None:
    where = f" in {made.within}" if made.within else ""
    span = f"{made.period.start} – {made.period.end}, end excluded"
    table = Table(
        "名次", "code", "name", *(RATE_NAMES[key] for key in MAIN_RATES), "得分", "等级",
        title=f"{made.level} ranking {made.period.label} ({span}){where}",
    )  # fmt: skip
    for rank, row in zip(made.ranks, made.rows, strict=True):
        table.add_row(
            "—" if rank is None else str(rank),
            row.code,
            row.name,
            *(_percent(row.rates.get(key)) for key in MAIN_RATES),
            "—" if row.score is None else f"{row.score:.1f}",
            row.grade or "—",
        )
    out.print(table)
    out.print(f"{len(made.rows)} unit(s) with activity; rates in %, — where nothing was due (see docs/kpis.md)")


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}"
