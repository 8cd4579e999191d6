"""`gridloop callbacks`: the call-back queue (回访任务), soonest due first, for the desk that makes the calls."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from ops.cli_support import fail_cleanly, local_time, out, parse_now, plain
from ops.config import Settings
from ops.history_cli import reading_views, views_option
from projections.callbacks import callback_queue


@click.command(name="callbacks")
@click.option("--due-before", "due_text", default=None, help="Only tasks due before this time (ISO 8601).")
@click.option("--overdue", is_flag=True, help="Only tasks past their due time at --now.")
@click.option("--now", "now_text", default=None, help="Judge 'overdue' at this time (ISO 8601; default: now).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@views_option
@click.pass_obj
@fail_cleanly
def callbacks_command(
    settings: Settings,
    due_text: str | None,
    overdue: bool,
    now_text: str | None,
    limit: int,
    as_json: bool,
    views_path: Path | None,
) -> None:
    """Closed cases of residents awaiting their call-back (回访), with due time and missed attempts."""
    now = parse_now(now_text)
    due_before = parse_now(due_text) if due_text else None
    with reading_views(settings, views_path) as views:
        tasks = callback_queue(views, now=now, due_before=due_before, overdue=overdue, limit=limit)
    if as_json:
        click.echo(json.dumps([plain(t) for t in tasks], ensure_ascii=False))
        return
    table = Table("case", "source", "call", "grid", "category", "closed", "due", "attempts", "last miss", "overdue")
    for t in tasks:
        table.add_row(
            t.short_id,
            t.source,
            t.reporter,
            t.grid,
            t.category,
            local_time(t.closed_at),
            local_time(t.due_at),
            str(t.attempts or ""),
            f"{t.last_reason} {local_time(t.last_attempt_at)}" if t.last_reason else "",
            "[red]yes[/red]" if t.overdue else "",
        )
    out.print(table)
    out.print(f"{len(tasks)} call-back(s) shown (limit {limit}); due times judged at {local_time(now)}")
