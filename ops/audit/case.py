"""`gridloop audit case ID`: a case's trace (痕迹) on the terminal, and its JSON and HTML exports."""

from __future__ import annotations

import json
from pathlib import Path
from zoneinfo import ZoneInfo

import click
from rich.markup import escape
from rich.table import Table

from ops.cli_support import fail_cleanly, out, parse_now, runtime
from ops.config import Settings
from projections.audit.trace import DEADLINE_NAMES, STATE_NAMES, CaseTrace, Step, case_trace
from projections.audit.trace_export import local_time, span, trace_html, trace_json

_LIGHT = {"on_time": "green", "yellow": "yellow", "overdue": "red"}


@click.command(name="case")
@click.argument("case_id")
@click.option(
    "--now", "now_text", default=None, help="Count the open case's last state up to this time (default: now)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON export instead of the tables.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path), help="Write the HTML export.")
@click.option("--json-out", "json_file", type=click.Path(dir_okay=False, path_type=Path), help="Write the JSON export.")
@click.pass_obj
@fail_cleanly
def case_command(
    settings: Settings,
    case_id: str,
    now_text: str | None,
    as_json: bool,
    html_file: Path | None,
    json_file: Path | None,
) -> None:
    """A case's trace (痕迹): every step — who, when, what, why, state, accountable party, time in state, deadline."""
    now = parse_now(now_text)
    with runtime(settings) as rt:
        rt.catch_up()
        trace = case_trace(rt.views, case_id, rt.app.calendar, now=now)
    data = trace_json(trace)
    if json_file is not None:
        json_file.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    if html_file is not None:
        html_file.write_text(trace_html(trace), encoding="utf-8")
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False))
    else:
        _print(trace)
    for written in (json_file, html_file):
        if written is not None:
            click.echo(f"wrote {written}", err=True)


def _print(trace: CaseTrace) -> None:
    zone = ZoneInfo(trace.zone)
    out.print(
        f"[bold]case {trace.case_id}[/bold]  {trace.status.value} {STATE_NAMES[trace.status]}  "
        f"{escape(trace.category)} {escape(trace.category_name)}"
    )
    out.print(
        f"grid {escape(trace.grid)} (community {escape(trace.community or '—')})   desk {escape(trace.desk)}   "
        f"reported {local_time(trace.reported_at, zone)}   closed {local_time(trace.closed_at, zone)}"
    )
    out.print(f"description: {escape(trace.description)}")
    deadline = f"{local_time(trace.deadline, zone)} {_status(trace.deadline_status)}".rstrip()
    out.print(f"accountable: {escape(trace.accountable or '— (not open)')}   deadline: {deadline}")
    steps = Table("#", "occurred / recorded", "what", "who", "why", "state", "accountable", "time in state", "deadline")
    for step in trace.steps:
        steps.add_row(
            str(step.version),
            _when(step, zone),
            f"{step.action_name} {step.event_type}",
            _who(step),
            escape(step.why),
            f"{step.state_before.value + ' → ' if step.state_before else ''}{step.state_after.value}",
            escape(step.accountable or "—"),
            f"{span(step.elapsed)} (working {span(step.working)})",
            _deadline(step, zone),
        )
    out.print(steps)
    totals = Table("state", "entries", "elapsed", "working time", "accountable", title="time in each state")
    for total in trace.totals:
        ongoing = " (ongoing)" if total.ongoing else ""
        totals.add_row(
            f"{total.state.value} {STATE_NAMES[total.state]}{ongoing}",
            str(total.entries),
            span(total.elapsed),
            span(total.working),
            escape(", ".join(total.accountable) or "—"),
        )
    out.print(totals)
    as_of = f" up to {local_time(trace.as_of, zone)}" if trace.as_of else ""
    out.print(f"{len(trace.steps)} step(s); times in {trace.zone}; working hours {trace.working_hours}{as_of}")


def _when(step: Step, zone: ZoneInfo) -> str:
    text = f"{local_time(step.occurred_at, zone)}\n{local_time(step.recorded_at, zone)}"
    if step.late_upload:
        text += f"\n[red]late upload +{span(step.recorded_at - step.occurred_at)}[/red]"
    return text


def _who(step: Step) -> str:
    text = f"{escape(step.actor.id)} ({escape(step.actor.kind)})"
    if step.actor.policy:
        text += f"\npolicy {escape(step.actor.policy)} v{escape(step.actor.policy_version or '?')}"
    return text


def _deadline(step: Step, zone: ZoneInfo) -> str:
    if step.deadline is None:
        text = "—"
    else:
        used = f" {step.limit_used:.0%}" if step.limit_used is not None else ""
        paused = " paused" if step.clock_paused else ""
        text = f"{local_time(step.deadline, zone)} {_status(step.deadline_status)}{used}{paused}"
    if step.deadline_after != step.deadline:
        text += f"\n→ {local_time(step.deadline_after, zone)}"
    return text


def _status(status: str) -> str:
    return f"[{_LIGHT[status]}]{status} {DEADLINE_NAMES[status]}[/{_LIGHT[status]}]" if status else ""
