"""`gridloop whatif`: the what-if comparison on the command line (a table, or JSON for machines)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

import click
import structlog
from rich.console import Console
from rich.table import Table

from engine.application import Gridloop
from engine.dispatch import POLICIES
from engine.errors import GridloopError
from engine.working_time import CHINA
from ops.config import ConfigError, Settings
from ops.whatif.compare import whatif
from ops.whatif.report import LIGHTS, WhatIfReport

log = structlog.get_logger()

ROWS: tuple[tuple[str, str, str], ...] = (
    ("cases", "cases replayed", "count"),
    ("closed", "closed (结案)", "count"),
    ("open_at_end", "still open when the model stopped", "count"),
    ("on_time_rate", "on-time closure rate (按期结案率)", "rate"),
    ("mean_hours_to_close", "mean time to close (h)", "hours"),
    ("workload_cv", "workload spread: CV of cases per worker", "ratio"),
    ("workload_max", "workload: most cases one worker handled", "count"),
    ("unit_cases", "cases handled by units", "count"),
    ("escalations", "escalations (督办)", "count"),
    *((f"warnings.{light}", f"warnings, {light} light", "count") for light in LIGHTS),
    ("refusals", "commands refused", "count"),
)
"""The table's rows: the KPI's key (dotted into a nested dict), its label and how it is shown."""


@click.command(name="whatif")
@click.option("--policy", required=True, help=f"The dispatch policy to try: {', '.join(POLICIES)}.")
@click.option("--from", "start_text", required=True, help="Start of the period (ISO 8601; local time if no offset).")
@click.option("--to", "end_text", required=True, help="End of the period, excluded (ISO 8601).")
@click.option(
    "--baseline",
    default=None,
    help="Compare with this policy (default: the one the log names, else grid-owner).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def whatif_command(
    settings: Settings, policy: str, start_text: str, end_text: str, baseline: str | None, as_json: bool
) -> None:
    """Replay a period's recorded requests through another dispatch policy (isolated store) and compare KPIs."""
    start, end = _moment("--from", start_text), _moment("--to", end_text)
    try:
        if not settings.event_store_path.is_file():
            raise ConfigError(f"no event store at {settings.event_store_path}: simulate a district or use --data-dir")
        source = Gridloop(settings.event_store_env())
        try:
            report = whatif(source, policy, start, end, baseline=baseline)
        finally:
            source.close()
    except (GridloopError, ConfigError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    log.info(
        "whatif_compared", policy=report.policy.policy, baseline=report.baseline.policy, cases=report.policy.cases,
        start=start.isoformat(), end=end.isoformat(),
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        _print(report)


def _moment(option: str, text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO 8601 time, e.g. 2026-11-23T08:00+08:00", param_hint=option
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=CHINA)


def _print(report: WhatIfReport) -> None:
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    a, b = report.baseline, report.policy
    title = f"What if {b.policy} had dispatched {_local(report.start)} – {_local(report.end)}"
    table = Table("KPI", f"{a.policy} (baseline)", b.policy, "Δ", title=title)
    values, delta = report.as_dict(), report.delta()
    for key, label, kind in ROWS:
        old, new, change = (_pick(values["baseline"], key), _pick(values["policy"], key), _pick(delta, key))
        table.add_row(label, _shown(old, kind), _shown(new, kind), _shown(change, kind, signed=True))
    out.print(table)
    skipped = ", ".join(f"{outcome} {n}" for outcome, n in report.skipped.items() if n) or "none"
    out.print(
        f"{report.requests} request(s) reported in the period; left out: {skipped}. Workload over {b.workers} "
        "worker(s) on duty in the period. Both columns are the same model (docs/whatif.md), not the recorded outcome."
    )
    for text in report.refusals:
        out.print(f"[yellow]refused:[/yellow] {text}")


def _pick(values: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        values = values[part]
    return values


def _shown(value: Any, kind: str, *, signed: bool = False) -> str:
    if value is None:
        return "—"
    sign = "+" if signed and value > 0 else ""
    if kind == "rate":
        return f"{sign}{value * 100:.1f} {'pp' if signed else '%'}"
    if kind in ("hours", "ratio"):
        return f"{sign}{value:.2f}"
    return f"{sign}{value}"


def _local(when: datetime) -> str:
    return when.astimezone(CHINA).strftime("%Y-%m-%d %H:%M")
