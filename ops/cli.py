"""The command-line interface: thin commands over the application service and the view queries."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import structlog
from rich.table import Table

from engine.clock import ManualClock
from engine.commands import COMMANDS
from engine.kafka import DEAD_ERROR, DEAD_OFFSET, DEAD_PARTITION, DEAD_TOPIC, EVENT_TYPE
from engine.parsing import command_fields, parse_command
from engine.policies import NO_POLICY
from ops.analytics_consumer import analytics_group
from ops.api_cli import serve_command, token_group
from ops.audit import audit_group
from ops.bench.cli import bench_command
from ops.callbacks_cli import callbacks_command
from ops.chaos import chaos_command
from ops.cli_support import LOCAL, fail_cleanly, local_time, out, parse_now, plain, runtime
from ops.config import Settings, load_settings
from ops.distributed import SUPERVISE, elected
from ops.evaluate_cli import evaluate_group
from ops.export_cli import export_command
from ops.history_cli import reading_views, rebuild_command, replay_command, views_option
from ops.logs import configure_logging
from ops.notify_cli import notify_command
from ops.postgres_cli import postgres_group
from ops.relay_cli import relay_command
from ops.report import report_command
from ops.runtime import PolicyRun, dead_letters, ensure_topics, open_kafka_runner, refusal_fields, topics
from ops.serve import stop_on_signals
from ops.whatif import whatif_command
from projections import queries

log = structlog.get_logger()


@click.group()
@click.option("--data-dir", type=click.Path(path_type=Path), help="Where the stores live (default ./var).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None)
@click.option("--log-format", type=click.Choice(["auto", "json", "console"]), default=None)
@click.pass_context
@fail_cleanly
def main(ctx: click.Context, data_dir: Path | None, log_level: str | None, log_format: str | None) -> None:
    """gridloop: work orders and grid dispatch for community grid governance (网格化治理)."""
    settings = load_settings(data_dir=data_dir, log_level=log_level, log_format=log_format)
    configure_logging(settings.log_level, settings.log_format)
    ctx.obj = settings


# -- writing ------------------------------------------------------------------------------


@main.command()
@click.option("--preset", default="yuanqu", show_default=True, help="District preset: yuanqu, wuchang, shizuishan.")
@click.option("--days", default=1, show_default=True, type=click.IntRange(1, 366))
@click.option("--seed", type=int, default=None, help="Random seed (default: the preset's).")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default=None, help="First day (default: yesterday).")
@click.option("--fresh", is_flag=True, help="Delete the data directory's stores first.")
@click.option(
    "--dispatch",
    default=None,
    help="The dispatch policy the simulated desk runs: balanced or grid-owner (default: dispatch_policy, if one).",
)
@click.pass_obj
@fail_cleanly
def simulate(
    settings: Settings,
    preset: str,
    days: int,
    seed: int | None,
    start: datetime | None,
    fresh: bool,
    dispatch: str | None,
) -> None:
    """Simulate district days (patrols, requests, handling) through the real command path."""
    from ops.presets import load_preset
    from ops.simulator import DEFAULT_DISPATCH, SimulationRefused
    from ops.simulator import simulate as run_simulation

    spec = load_preset(preset)
    if dispatch is None:
        dispatch = settings.dispatch_policy if settings.dispatch_policy != NO_POLICY else DEFAULT_DISPATCH
    first_day: date = start.date() if start else (datetime.now(LOCAL).date() - timedelta(days=1))
    if fresh and settings.uses_postgres:
        from ops.distributed import drop_schemas

        drop_schemas(settings)
    elif fresh:
        for path in (settings.event_store_path, settings.view_store_path):
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    clock = ManualClock(datetime.combine(first_day, datetime.min.time(), LOCAL).astimezone(UTC))
    with runtime(settings, clock) as rt:
        try:
            report = run_simulation(rt.app, clock, spec, days=days, start=first_day, seed=seed, dispatch=dispatch)
        except SimulationRefused as exc:
            raise click.UsageError(str(exc)) from None
        applied = rt.catch_up()
        log.info(
            "simulation_finished", preset=preset, days=days, commands=report.commands_executed, events_projected=applied
        )
        out.print(
            f"[bold]{spec.title}[/bold] — {days} simulated day(s) from {first_day.isoformat()}, seed {report.seed}"
        )
        out.print(
            f"{report.commands_executed} commands ({report.commands_repeated} repeats), {report.events_recorded} "
            f"events recorded; refused: {report.refused_commands}"
        )
        reported = ", ".join(f"{source} {n}" for source, n in sorted(report.cases_reported.items()))
        out.print(f"cases reported: {sum(report.cases_reported.values())} ({reported})")
        out.print(
            f"patrols {report.patrols}, late uploads {report.late_uploads}, rejected {report.rejections}, merged "
            f"{report.merges}, returned {report.returns}, reworked {report.reworks}, extensions "
            f"{report.extensions_requested} ({report.extensions_granted} granted), suspended {report.suspensions}, "
            f"escalated {report.escalations}, called back {report.call_backs} ({report.not_fixed} not fixed)"
        )
        out.print(
            f"dispatch policy {report.dispatch}: {report.policy_commands} commands ({report.reassignments} "
            f"reassignments); warnings {_by_key(report.warnings, '%')}; escalations by level "
            f"{_by_key(report.escalations_by_level)}; policy refusals: {report.policy_refusals}"
        )
        if rt.runner is None:
            out.print(f"mode {settings.mode}: the views follow Kafka — run `gridloop relay` and `gridloop project`")
        else:
            _print_summary(queries.summary(rt.views, clock.now()), clock.now())


@main.command(name="do", context_settings={"ignore_unknown_options": True})
@click.argument("action", required=False)
@click.argument("fields", nargs=-1)
@click.pass_obj
@fail_cleanly
def do_command(settings: Settings, action: str | None, fields: tuple[str, ...]) -> None:
    """Run one command: gridloop do ACTION field=value ... (no ACTION lists them)."""
    if action is None:
        for name, command_class in COMMANDS.items():
            spec = [f"{f}{'' if required else '?'}" for f, (_, required) in command_fields(command_class).items()]
            out.print(f"[bold]{name}[/bold]  {' '.join(spec)}")
        return
    data: dict[str, str] = {}
    for item in fields:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.UsageError(f"{item!r} is not field=value")
        data[key.strip()] = value
    command = parse_command(action, data)
    with runtime(settings) as rt:
        result = rt.app.execute(command)
        # Embedded mode: the policies answer at once (a registered case is dispatched before this returns).
        # Mode kafka: `gridloop supervise --follow` runs them.
        policies = rt.run_processes() if rt.runner is not None else PolicyRun()
        rt.catch_up()
        click.echo(json.dumps({**plain(result), **_plain_run(policies)}, ensure_ascii=False))


@main.command()
@click.option("--now", "now_text", default=None, help="Act on the time as of this moment (ISO 8601; default: now).")
@click.option("--follow", is_flag=True, help="Keep acting every --every seconds until stopped (SIGTERM / Ctrl-C).")
@click.option("--every", default=60.0, show_default=True, type=click.FloatRange(0.05, 3600), help="Seconds.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (one line per round).")
@click.pass_obj
@fail_cleanly
def supervise(settings: Settings, now_text: str | None, follow: bool, every: float, as_json: bool) -> None:
    """Run the dispatch policy and the supervisor (督办): react to new events, then act on the time."""
    if follow and now_text:
        raise click.UsageError("--now is one moment; --follow acts on the time as it passes (give one or the other)")
    moment = parse_now(now_text)
    if moment > datetime.now(UTC) + timedelta(minutes=5):
        raise click.BadParameter(
            f"{moment.isoformat()} is in the future; allowed: at or before now", param_hint="--now"
        )
    stop = stop_on_signals() if follow else None
    # Mode distributed: the policies of a deployment run in one process, the one holding the supervise lock.
    with runtime(settings) as rt:
        if rt.processes is None:
            raise click.UsageError("nothing to run: dispatch_policy is none and supervise is false (see ops/config.py)")
        names = ", ".join(m.name for m in rt.processes.managers)
        with elected(settings, SUPERVISE, stop) as election:
            if not election.active:
                if stop is None:
                    click.echo("another `gridloop supervise` is active (it holds the supervise lock): nothing done")
                return
            while True:
                election.check()
                run = rt.run_processes(moment)
                rt.catch_up()
                _print_policy_run(run, moment, names, as_json)
                if stop is None or election.wait(stop, every):
                    return
                moment = datetime.now(UTC)


@main.command()
@click.option("--rebuild", "rebuild_view", default=None, help="Drop and rebuild one view (or 'all') from zero.")
@click.option("--follow", is_flag=True, help="Keep following the log until stopped (SIGTERM / Ctrl-C).")
@click.pass_obj
@fail_cleanly
def project(settings: Settings, rebuild_view: str | None, follow: bool) -> None:
    """Bring the views up to date: from the event store (mode embedded) or from Kafka as a group worker (modes kafka
    and distributed)."""
    view = None if rebuild_view == "all" else rebuild_view
    with runtime(settings) as rt:
        if rt.runner is not None:
            if rebuild_view:
                rt.runner.rebuild(view)
            if follow:
                rt.runner.run(stop_on_signals())
            applied = rt.runner.run_until_caught_up()
            click.echo(f"{applied} events applied; views at position {rt.runner.position}")
            return
        ensure_topics(settings)
        kafka = open_kafka_runner(settings, rt)
        if rebuild_view:
            kafka.rebuild(view)
        if follow:
            kafka.run(stop_on_signals())
        else:
            kafka.catch_up()
        click.echo(
            f"{kafka.applied} events applied from {len(kafka.assigned)} partition(s) of group {settings.kafka_group}; "
            f"{kafka.dead_lettered} dead-lettered"
        )


@main.command(name="deadletters")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
@fail_cleanly
def dead_letter_list(settings: Settings, limit: int, as_json: bool) -> None:
    """Records the projection workers could not apply (mode kafka): origin, event type, error; and held aggregates."""
    records = dead_letters(settings, limit)
    with runtime(settings) as rt:
        held = queries.held_aggregates(rt.views)
    letters = [
        {
            "origin": f"{r.header(DEAD_TOPIC)}[{r.header(DEAD_PARTITION)}]@{r.header(DEAD_OFFSET)}",
            "key": (r.key or b"").decode("utf-8", "replace"),
            "event_type": r.header(EVENT_TYPE),
            "error": r.header(DEAD_ERROR),
        }
        for r in records
    ]
    if as_json:
        click.echo(json.dumps({"dead_letters": letters, "held": held}, ensure_ascii=False))
        return
    table = Table("origin", "key", "event type", "error", title=topics(settings).dead_letters(settings.kafka_group))
    for letter in letters:
        table.add_row(letter["origin"], letter["key"], letter["event_type"], letter["error"])
    out.print(table)
    out.print(f"{len(letters)} dead letter(s) shown (limit {limit}); {len(held)} aggregate(s) held")
    for h in held:
        out.print(f"held: {h['key']} on {h['topic']}[{h['partition']}] since offset {h['first_offset']}: {h['error']}")


# -- reading ------------------------------------------------------------------------------


@main.command()
@click.option("--status", default=None, help="Only cases in this state.")
@click.option("--grid", default=None, help="Only cases of this grid code.")
@click.option("--community", default=None, help="Only cases of this community code.")
@click.option("--overdue", is_flag=True, help="Only open cases past their deadline.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--now", "now_text", default=None, help="Judge deadlines at this time (ISO 8601; default: now).")
@click.option("--summary", "summary_only", is_flag=True, help="Counts only.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@views_option
@click.pass_obj
@fail_cleanly
def board(
    settings: Settings,
    status: str | None,
    grid: str | None,
    community: str | None,
    overdue: bool,
    limit: int,
    now_text: str | None,
    summary_only: bool,
    as_json: bool,
    views_path: Path | None,
) -> None:
    """The dispatcher's board: every case, its state, who is accountable, its deadline."""
    now = parse_now(now_text)
    with reading_views(settings, views_path) as views:
        if summary_only:
            summary = queries.summary(views, now)
            if as_json:
                click.echo(json.dumps(plain(summary), ensure_ascii=False))
            else:
                _print_summary(summary, now)
            return
        rows = queries.board(
            views, status=status, grid=grid, community=community, overdue=overdue or None, now=now, limit=limit
        )
        if as_json:
            click.echo(json.dumps([plain(r) for r in rows], ensure_ascii=False))
            return
        table = Table("case", "status", "category", "grid", "accountable", "deadline", "overdue", "督办")
        for r in rows:
            late = r.is_overdue(now)
            table.add_row(
                r.short_id,
                r.status,
                f"{r.category} {r.category_name}",
                r.grid,
                r.accountable or "—",
                local_time(r.deadline),
                "[red]yes[/red]" if late else "",
                str(r.escalation_level or ""),
            )
        out.print(table)
        out.print(f"{len(rows)} case(s) shown (limit {limit}); deadlines judged at {local_time(now)}")


@main.command(name="case")
@click.argument("case_id")
@click.option("--json", "as_json", is_flag=True)
@views_option
@click.pass_obj
@fail_cleanly
def case_command(settings: Settings, case_id: str, as_json: bool, views_path: Path | None) -> None:
    """One case: its state and its trace (痕迹), every step with who, when and why."""
    with reading_views(settings, views_path) as views:
        row = queries.find_case(views, case_id)
        steps = queries.timeline(views, row.case_id)
        if as_json:
            click.echo(json.dumps({"case": plain(row), "timeline": [plain(s) for s in steps]}, ensure_ascii=False))
            return
        out.print(f"[bold]case {row.case_id}[/bold]  {row.status}  {row.category} {row.category_name}")
        out.print(
            f"source: {row.source}   grid: {row.grid} (community {row.community})   "
            f"reported {local_time(row.reported_at)}"
        )
        out.print(f"accountable: {row.accountable or '— (not open)'}   deadline: {local_time(row.deadline)}")
        table = Table("#", "occurred", "recorded", "event", "actor", "details")
        for s in steps:
            table.add_row(
                str(s.version),
                local_time(s.occurred_at),
                local_time(s.recorded_at),
                s.event_type,
                s.actor,
                _short_details(s.details),
            )
        out.print(table)


@main.command()
@click.argument("worker")
@click.option("--json", "as_json", is_flag=True)
@views_option
@click.pass_obj
@fail_cleanly
def queue(settings: Settings, worker: str, as_json: bool, views_path: Path | None) -> None:
    """A worker's queue: the open cases assigned to them, soonest deadline first."""
    with reading_views(settings, views_path) as views:
        rows = queries.queue(views, worker)
        if as_json:
            click.echo(json.dumps([plain(r) for r in rows], ensure_ascii=False))
            return
        table = Table("case", "status", "category", "grid", "deadline")
        for r in rows:
            table.add_row(str(r.case_id)[:8], r.status, r.category, r.grid, local_time(r.deadline))
        out.print(table)
        out.print(f"{len(rows)} open case(s) for {worker}")


# -- the Kafka broker ---------------------------------------------------------------------


@main.group()
def kafka() -> None:
    """The Kafka broker of the log (kafka_provisioner: local, container or external)."""


@kafka.command(name="up")
@click.pass_obj
@fail_cleanly
def kafka_up(settings: Settings) -> None:
    """Start the broker unless it runs; print its bootstrap address."""
    from ops.kafka_broker import provisioner

    click.echo(provisioner(settings).up().bootstrap)


@kafka.command(name="down")
@click.pass_obj
@fail_cleanly
def kafka_down(settings: Settings) -> None:
    """Stop the broker (an external cluster is left alone)."""
    from ops.kafka_broker import provisioner

    provisioner(settings).down()


@kafka.command(name="status")
@click.pass_obj
@fail_cleanly
def kafka_status(settings: Settings) -> None:
    """Print the broker's bootstrap address; exit status 1 if it is not up."""
    from ops.kafka_broker import provisioner

    broker = provisioner(settings).status()
    if broker is None:
        click.echo(f"no Kafka broker is up ({settings.kafka_provisioner} provisioner)", err=True)
        sys.exit(1)
    click.echo(broker.bootstrap)


@kafka.command(name="fetch")
@click.pass_obj
@fail_cleanly
def kafka_fetch(settings: Settings) -> None:
    """Fetch the local broker's jars from Maven Central into kafka_cache_dir (once; later runs reuse them)."""
    from ops.kafka_broker import fetch_jars

    click.echo(fetch_jars(settings))


# -- formatting ---------------------------------------------------------------------------


def _print_policy_run(run: PolicyRun, now: datetime, names: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"now": now.isoformat(), **_plain_run(run)}, ensure_ascii=False))
        return
    counts = run.counts()
    issued = ", ".join(f"{kind} {n}" for kind, n in counts.items()) or "nothing"
    out.print(
        f"{local_time(now)} {names}: {sum(counts.values())} event(s) recorded ({issued}); refused: {len(run.refusals)}"
    )
    for refusal in map(refusal_fields, run.refusals):
        out.print(f"refused: {refusal['policy']} {refusal['command']} {refusal['command_id']}: {refusal['error']}")


def _plain_run(run: PolicyRun) -> dict[str, Any]:
    """A policy run for JSON: the events the policies recorded, their counts, and what was refused."""
    return {
        "policies": [plain(e) for e in run.events],
        "policy_counts": run.counts(),
        "policy_refusals": [refusal_fields(r) for r in run.refusals],
    }


def _by_key(counts: Mapping[int, int], suffix: str = "") -> str:
    return ", ".join(f"{key}{suffix}: {n}" for key, n in sorted(counts.items())) or "none"


def _print_summary(summary: Any, now: datetime) -> None:
    out.print(f"\n[bold]Board[/bold] as of {local_time(now)}")
    table = Table("status", "cases")
    for status, count in summary.by_status.items():
        table.add_row(status, str(count))
    out.print(table)
    out.print(
        f"open: {summary.open}   overdue: [red]{summary.overdue}[/red]   escalated: {summary.escalated}   "
        f"closed: {summary.closed}"
    )
    grids = Table("grid", "open", "overdue", title="Top grids by open cases")
    for g in summary.top_grids:
        grids.add_row(g.grid, str(g.open), str(g.overdue))
    out.print(grids)


def _short_details(details: Any) -> str:
    data = json.loads(details) if isinstance(details, str) else dict(details)
    text = ", ".join(f"{k}={v}" for k, v in data.items() if v not in ("", None, [], {}))
    width = max(30, shutil.get_terminal_size((120, 20)).columns - 60)
    return text if len(text) <= width else text[: width - 1] + "…"


main.add_command(whatif_command)
main.add_command(serve_command)
main.add_command(token_group)
main.add_command(audit_group)
main.add_command(replay_command)
main.add_command(rebuild_command)
main.add_command(evaluate_group)
main.add_command(export_command)
main.add_command(analytics_group)
main.add_command(report_command)
main.add_command(callbacks_command)
main.add_command(notify_command)
main.add_command(relay_command)
main.add_command(postgres_group)
main.add_command(bench_command)
main.add_command(chaos_command)
