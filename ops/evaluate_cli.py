"""`gridloop evaluate`: 四度 worker scores, patrol coverage and community burden for a period (考核)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from engine.errors import InvalidCommand
from ops.cli_support import LOCAL, fail_cleanly, out, parse_now, plain
from ops.config import Settings
from ops.history_cli import reading_views, views_option
from ops.runtime import working_calendar
from projections.evaluation.burden import KINDS, BurdenRow, burden
from projections.evaluation.coverage import Coverage, coverage
from projections.evaluation.places import LEVELS
from projections.evaluation.scoring import DEGREES, Degree
from projections.evaluation.workers import evaluate_workers
from projections.kpi_queries import Period, parse_period


def _period(ctx: click.Context, param: click.Parameter, text: str) -> Period:
    try:
        return parse_period(text)
    except ValueError as error:
        raise click.BadParameter(str(error), ctx, param) from None


def _today(ctx: click.Context, param: click.Parameter, text: str | None) -> date:
    try:
        return parse_now(text).astimezone(LOCAL).date()
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO 8601 time; allowed: e.g. 2026-11-30T18:00", ctx, param
        ) from None


def _within(within: str | None, grid: str | None, community: str | None) -> str | None:
    given = [code for code in (within, grid, community) if code is not None]
    if len(given) > 1:
        raise InvalidCommand("within", "more than one of --within, --grid, --community given", "one of them")
    return given[0] if given else None


_PERIOD = click.option(
    "--period", required=True, callback=_period, help="A month 2026-11, an ISO week 2026-W47 or a day 2026-11-02."
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
_WITHIN = click.option("--within", default=None, help="Only this grid, community, street or district (a code).")


@click.group(name="evaluate")
def evaluate_group() -> None:
    """考核: 四度 worker evaluation, patrol coverage and community burden, per period."""


@evaluate_group.command(name="workers")
@_PERIOD
@_WITHIN
@click.option("--grid", default=None, help="Only the worker(s) of this grid.")
@click.option("--community", default=None, help="Only the workers of this community's grids.")
@click.option(
    "--now", "today", default=None, callback=_today, help="Cut a running period's working days here (default: now)."
)
@_JSON
@views_option
@click.pass_obj
@fail_cleanly
def workers_command(
    settings: Settings, period: Period, within: str | None, grid: str | None, community: str | None,
    today: date, as_json: bool, views_path: Path | None,
) -> None:  # fmt: skip
    """四度 (熟悉度, 信任度, 落实度, 满意度) of each grid worker, best first, with the inputs of each degree."""
    place = _within(within, grid, community)
    with reading_views(settings, views_path) as store:
        found = evaluate_workers(store, period, within=place, calendar=working_calendar(settings), today=today)
    if as_json:
        click.echo(json.dumps(plain(found), ensure_ascii=False))
        return
    table = Table("#", "worker", "grids", *(f"{zh} {name}" for name, zh in DEGREES.items()), "score", "grade")
    cells = (_familiarity, _trust, _delivery, _satisfaction)
    for rank, e in enumerate(found, 1):
        table.add_row(
            str(rank), f"{e.worker} {e.name}", ", ".join(g[-6:] for g in e.grids),
            *(cell(e.degree(name)) for cell, name in zip(cells, DEGREES, strict=True)), _score(e.score), e.grade,
        )  # fmt: skip
    out.print(f"[bold]四度 of {len(found)} grid worker(s), {period.label}[/bold]{_place(place or '')}")
    out.print(table)


def _place(text: str) -> str:
    return f" in {text}" if text else ""


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _of(inputs: dict[str, int], numerator: str, denominator: int) -> str:
    return f"{inputs[numerator]}/{denominator}"


def _familiarity(d: Degree) -> str:
    i = d.inputs
    found = i["patrol_cases"] + i["resident_cases"] + i["app_cases"] + i["hotline_cases"]
    days = _of(i, "patrol_days", i["workdays"])
    return f"{_score(d.score)}\npatrol days {days}, found {_of(i, 'patrol_cases', found)}"


def _trust(d: Degree) -> str:
    i = d.inputs
    asked = i["resident_cases"] + i["app_cases"] + i["hotline_cases"]
    direct = i["resident_cases"] + i["app_cases"]
    return f"{_score(d.score)}\ndirect {direct}/{asked}, fixed {_of(i, 'fixed', i['called_back'])}"


def _delivery(d: Degree) -> str:
    i = d.inputs
    return (
        f"{_score(d.score)}\non time {_of(i, 'handled_on_time', i['handled'])}, "
        f"passed {_of(i, 'verified_passed', i['verified'])}, returned {_of(i, 'returned', i['dispatched'])}"
    )


def _satisfaction(d: Degree) -> str:
    i = d.inputs
    return f"{_score(d.score)}\n{i['satisfied']}+{i['basically_satisfied']}×0.9 of {i['called_back']} call-backs"


@evaluate_group.command(name="coverage")
@_PERIOD
@_WITHIN
@click.option("--unvisited", is_flag=True, help="Only the grids no patrol visited in the period.")
@_JSON
@views_option
@click.pass_obj
@fail_cleanly
def coverage_command(
    settings: Settings, period: Period, within: str | None, unvisited: bool, as_json: bool, views_path: Path | None
) -> None:
    """巡查覆盖: patrols, checkpoints and findings of each grid in the period, and the grids not visited."""
    with reading_views(settings, views_path) as store:
        found = coverage(store, period, within=within)
    grids = found.unvisited if unvisited else found.grids
    if as_json:
        click.echo(json.dumps(_coverage_json(found, unvisited), ensure_ascii=False))
        return
    rate = "—" if found.rate is None else f"{found.rate:.1%}"
    out.print(
        f"[bold]Patrol coverage {period.label}[/bold]{_place(within or '')}: {found.visited_count} of "
        f"{len(found.grids)} grid(s) visited ({rate}); {len(found.unvisited)} not visited"
    )
    table = Table("grid", "community", "patrol days", "patrols", "checkpoints", "findings", "minutes", "workers")
    for g in grids:
        style = None if g.visited else "red"
        table.add_row(
            g.grid, g.community, str(g.patrol_days), str(g.patrols), str(g.checkpoints), str(g.findings),
            str(g.minutes), str(g.workers), style=style,
        )  # fmt: skip
    out.print(table)


def _coverage_json(found: Coverage, unvisited: bool) -> dict[str, Any]:
    return {
        "period": found.period,
        "within": found.within,
        "grids_in_force": len(found.grids),
        "visited": found.visited_count,
        "rate": found.rate,
        "unvisited": [g.grid for g in found.unvisited],
        "grids": plain(found.unvisited if unvisited else found.grids),
    }


@evaluate_group.command(name="burden")
@_PERIOD
@click.option("--level", type=click.Choice(LEVELS), default="community", show_default=True)
@_WITHIN
@_JSON
@views_option
@click.pass_obj
@fail_cleanly
def burden_command(
    settings: Settings, period: Period, level: str, within: str | None, as_json: bool, views_path: Path | None
) -> None:
    """社区减负: tasks, inspections, reports and certificates pushed onto each place, and what the rules refused."""
    with reading_views(settings, views_path) as store:
        rows = burden(store, period, level=level, within=within)
    if as_json:
        click.echo(json.dumps([_burden_json(r) for r in rows], ensure_ascii=False))
        return
    out.print(
        f"[bold]Burden by {level}, {period.label}[/bold]{_place(within or '')}: pushed / refused / borne "
        "(distinct items pushed → borne)"
    )
    table = Table(level, *(f"{zh} {kind}" for kind, zh in KINDS.items()), "total")
    for r in rows:
        cells = []
        for kind in KINDS:
            k = r.kinds[kind]
            items = f"\n{k.items_pushed} → {k.items_borne} items" if k.items_pushed else ""
            cells.append(f"{k.pushed} / {k.refused} / {k.borne}{items}" if k.pushed else "")
        table.add_row(r.code, *cells, f"{r.pushed} / {r.refused} / {r.borne}")
    out.print(table)


def _burden_json(row: BurdenRow) -> dict[str, Any]:
    kinds = {kind: plain(k) | {"borne": k.borne} for kind, k in row.kinds.items()}
    return {"level": row.level, "code": row.code, "period": row.period, "kinds": kinds,
            "pushed": row.pushed, "refused": row.refused, "borne": row.borne}  # fmt: skip
