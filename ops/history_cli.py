"""`gridloop replay` (views as of an instant) and `gridloop rebuild` (blue/green), and reading views from a file."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from engine.application import Gridloop
from engine.errors import InvalidCommand
from ops.cli_support import LOCAL, fail_cleanly, out, plain, runtime
from ops.config import Settings
from ops.runtime import working_calendar
from projections.projection import chosen
from projections.rebuild import BlueGreen, LogSource, Swapped
from projections.replay import BY, RECORDED, Replay, replay
from projections.store import Views, ViewStore
from projections.views import default_projections

F = TypeVar("F", bound=Callable[..., Any])


def views_option(command: F) -> F:
    """``--views PATH``: read the views from that file (a replay's store) instead of the live ones."""
    return click.option(
        "--views",
        "views_path",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="Read this view store (e.g. one `gridloop replay` built) instead of the live views.",
    )(command)


@contextmanager
def reading_views(settings: Settings, views_path: Path | None) -> Iterator[Views]:
    """The live views, caught up (embedded mode); or the view store at ``views_path``, as it is."""
    if views_path is None:
        with runtime(settings) as rt:
            rt.catch_up()
            yield rt.views
        return
    if not _is_view_store(views_path):
        raise InvalidCommand("views", f"{views_path} is not a view store", "a file made by `gridloop replay`")
    store = ViewStore.open(views_path)
    try:
        yield store
    finally:
        store.close()


def _is_view_store(path: Path) -> bool:
    """Whether the file is an SQLite database with a view store's tables (never create them in another file)."""
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            names = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            connection.close()
    except sqlite3.DatabaseError:
        return False
    return {"tracking", "view_version"} <= names


def _event_store(settings: Settings) -> Gridloop:
    """The event store alone: a replay or a rebuild opens no runtime (whose runner would write the live views)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return Gridloop(settings.event_store_env(), calendar=working_calendar(settings))


def parse_as_of(text: str) -> datetime:
    """An instant from ISO 8601 text; a naive one is Asia/Shanghai time."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidCommand(
            "as_of",
            f"{text!r} is not an ISO 8601 time",
            "such as 2026-05-01T12:00 (Asia/Shanghai unless it has a zone)",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=LOCAL)


class _RateColumn(ProgressColumn):
    """Events per second, once there is a rate to show."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f} events/s" if task.speed else "", style="progress.data.speed")


@contextmanager
def _progress_bar(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A rich progress bar over log positions (count, events/s, ETA); yields the callback a runner reports to."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=out, transient=not out.is_terminal) as bar:
        task = bar.add_task(label, total=max(total, 1))
        yield lambda position: bar.update(task, completed=min(position, total))


@click.command(name="replay")
@click.option(
    "--as-of", "as_of_text", required=True, help="The instant: ISO 8601 (Asia/Shanghai unless it has a zone)."
)
@click.option(
    "--by",
    type=click.Choice(BY),
    default=RECORDED,
    show_default=True,
    help="recorded: what the system knew then; occurred: what had happened by then.",
)
@click.option("--view", "view", default="all", show_default=True, help="One view, or all.")
@click.option(
    "--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Store to write."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
@click.pass_obj
@fail_cleanly
def replay_command(
    settings: Settings, as_of_text: str, by: str, view: str, out_path: Path | None, as_json: bool
) -> None:
    """Build the views as they stood at an instant (回溯), into a store of their own; the live views are not touched."""
    as_of = parse_as_of(as_of_text)
    path = out_path or settings.data_dir / "replay" / f"{as_of.astimezone(LOCAL):%Y-%m-%dT%H%M%S}-{by}.sqlite"
    app = _event_store(settings)
    try:
        projections = chosen(default_projections(app.catalogue, app.calendar), None if view == "all" else view)
        total = app.recorder.max_notification_id() or 0
        with _progress_bar(total, f"replay by {by} time") as progress:
            result = replay(app.recorder, app.mapper, path, projections, as_of, by, progress)
    finally:
        app.close()
    if as_json:
        click.echo(json.dumps(plain(result), ensure_ascii=False))
        return
    _print_replay(result, total)


def _print_replay(result: Replay, total: int) -> None:
    out.print(
        f"[bold]Views as of {result.as_of.astimezone(LOCAL):%Y-%m-%d %H:%M:%S} (Asia/Shanghai)[/bold], "
        f"by {result.by} time: {result.applied} events applied, log read up to position {result.position} of {total}"
    )
    if result.passed_over:
        out.print(f"{result.passed_over} events left out: they occurred later, or after a later event of their own")
    if result.late_stamped:
        shown = ", ".join(map(str, result.late_stamped[:10]))
        out.print(
            f"[yellow]{len(result.late_stamped)} event(s) after the cut are stamped at or before the instant "
            f"(positions {shown}): committed after a later one, left out; a clock set back would also do this[/yellow]"
        )
    table = Table("view", "rows", "checksum")
    for state in result.views:
        table.add_row(state.name, ", ".join(f"{t} {n}" for t, n in state.rows.items()), state.checksum[:16])
    out.print(table)
    now = result.as_of.isoformat(timespec="minutes")
    out.print(f"written to {result.path}; look at it with:")
    out.print(f"  gridloop board --views {result.path} --now {now}")
    out.print(f"  gridloop case CASE_ID --views {result.path}      gridloop queue WORKER --views {result.path}")


@click.command(name="rebuild")
@click.argument("view")
@click.option("--check-only", is_flag=True, help="Build and compare the checksums, but keep the live views.")
@click.option(
    "--processes",
    type=click.IntRange(1, 16),
    default=None,
    help="Processes that build the views side by side (default: 2 with two views or more on two cores or more).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
@click.pass_obj
@fail_cleanly
def rebuild_command(settings: Settings, view: str, check_only: bool, processes: int | None, as_json: bool) -> None:
    """Rebuild VIEW (or all) from offset zero beside the live views, then swap it in (blue/green).

    Prints the live and the rebuilt checksum of each view; exit status 1 if they differ (the live view
    was wrong: the rebuilt one has replaced it, unless --check-only).
    """
    if settings.views_follow_kafka:
        raise click.UsageError(
            f"mode {settings.mode}: the views track Kafka offsets per partition, not event-store positions; "
            "rebuild them from the topics with `gridloop project --rebuild VIEW|all`"
        )
    app = _event_store(settings)
    live = ViewStore.open(settings.view_store_path)
    try:
        projections = chosen(default_projections(app.catalogue, app.calendar), None if view == "all" else view)
        groups = processes or (2 if len(projections) > 1 and (os.cpu_count() or 1) > 1 else 1)
        total = app.recorder.max_notification_id() or 0
        with BlueGreen(app.recorder, app.mapper, live, projections) as rebuilding:
            with _progress_bar(total, "rebuild") as progress:
                rebuilding.build(progress, LogSource(Gridloop, dict(app.env)), groups)
            with out.status("swapping in one transaction, then checksums of both sides"):
                swapped = rebuilding.swap(check_only)
    finally:
        live.close()
        app.close()
    wrong = [s for s in swapped if not s.equal]
    if as_json:
        click.echo(json.dumps({"views": [_plain_swapped(s) for s in swapped], "swapped": not check_only}))
    else:
        _print_rebuild(swapped, check_only)
    if wrong:
        sys.exit(1)


def _plain_swapped(swapped: Swapped) -> dict[str, Any]:
    return {**plain(swapped), "compared": swapped.compared, "equal": swapped.equal}


def _print_rebuild(swapped: tuple[Swapped, ...], check_only: bool) -> None:
    table = Table("view", "position", "live checksum", "rebuilt checksum", "", "rows")
    for s in swapped:
        mark = "[green]equal[/green]" if s.equal else "[bold red]DIFFERENT[/bold red]" if s.compared else "not compared"
        rows = ", ".join(f"{t} {n}" for t, n in s.rows.items())
        table.add_row(s.name, str(s.position), s.live[:16] or "—", s.rebuilt[:16], mark, rows)
    out.print(table)
    for s in swapped:
        if s.equal:
            continue
        if not s.compared:
            problem = f"the live view {s.name} could not be brought to position {s.position} (see the log above)"
        else:
            problem = f"CHECKSUMS DIFFER for {s.name} at position {s.position}: the live view was wrong"
        outcome = "it is kept (--check-only)" if check_only else "the rebuilt view has replaced it"
        out.print(f"[bold red]{problem}; {outcome}[/bold red]")
    verb = "checked (live views kept)" if check_only else "swapped in"
    out.print(f"{len(swapped)} view(s) rebuilt from offset zero and {verb}")
