"""`gridloop export`: daily Avro files of the event log for analysts, with a progress bar and a summary."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from engine.application import Gridloop
from ops.cli_support import fail_cleanly, out
from ops.config import Settings
from ops.export import AGGREGATE_FOLDERS, CODECS, Export, export
from ops.runtime import working_calendar
from projections.replay import BY, RECORDED


@click.command(name="export")
@click.option("--from", "first", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First local day.")
@click.option("--to", "last", required=True, type=click.DateTime(["%Y-%m-%d"]), help="Last local day (inclusive).")
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Export directory."
)
@click.option(
    "--by",
    type=click.Choice(BY),
    default=RECORDED,
    show_default=True,
    help="recorded: the day the store recorded an event (past days never change); occurred: the day it happened.",
)
@click.option(
    "--aggregate",
    "aggregates",
    multiple=True,
    type=click.Choice(AGGREGATE_FOLDERS),
    help="Export only these aggregates' events (repeat; default all).",
)
@click.option("--codec", "block_codec", type=click.Choice(CODECS), default="deflate", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest instead of a table.")
@click.pass_obj
@fail_cleanly
def export_command(
    settings: Settings,
    first: datetime,
    last: datetime,
    out_dir: Path,
    by: str,
    aggregates: tuple[str, ...],
    block_codec: str,
    as_json: bool,
) -> None:
    """Write the events of local days FROM..TO (Asia/Shanghai) as Avro object container files, one per day and
    event type, readable by any Avro reader; and a manifest (files, counts, positions, schema fingerprints)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = Gridloop(settings.event_store_env(), calendar=working_calendar(settings))
    try:
        total = app.recorder.max_notification_id() or 0
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=out, transient=not out.is_terminal) as bar:
            task = bar.add_task(f"export by {by} time (log positions)", total=max(total, 1))
            result = export(
                app.recorder,
                app.mapper,
                out_dir,
                first.date(),
                last.date(),
                by,
                aggregates or AGGREGATE_FOLDERS,
                block_codec,
                progress=lambda position: bar.update(task, completed=min(position, total)),
            )
    finally:
        app.close()
    if as_json:
        click.echo(json.dumps(result.manifest, ensure_ascii=False))
        return
    _print_export(result)


def _print_export(result: Export) -> None:
    table = Table("day", "files", "records", "positions", title=f"Export into {result.directory}")
    for day in result.manifest["days"]:
        found = [f for f in result.files if f.day == day["day"]]
        positions = f"{min(f.first_position for f in found)}–{max(f.last_position for f in found)}" if found else "—"
        table.add_row(day["day"], str(len(found)), str(day["records"]), positions)
    out.print(table)
    positions = result.manifest["positions"]
    out.print(
        f"{result.records} records in {len(result.files)} files (by {result.manifest['by']} time, "
        f"codec {result.manifest['codec']}); log read from position {positions['read_from']} to "
        f"{positions['read_to']} of {positions['log_head']}"
    )
    out.print(f"manifest: {result.manifest_path}")
