"""`gridloop audit verify`: is the log what was recorded? The store's seals and Kafka's copy, checked independently."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from engine.application import Gridloop
from engine.errors import GridloopError
from engine.relay import store_of
from engine.sealing import seal_reader
from ops.cli_support import fail_cleanly, out, plain
from ops.config import Settings
from ops.runtime import kafka_bootstrap, topics
from projections.audit.verdict import KINDS, Comparison, Verdict, compare
from projections.audit.verify import verify_kafka, verify_store

SHOWN = 20
"""Problems listed per source on the terminal (--json lists up to MAX_LISTED)."""


@click.command(name="verify")
@click.option("--store/--no-store", default=True, show_default=True, help="Check the event store's seals.")
@click.option("--kafka/--no-kafka", default=None, help="Check the Kafka topics (default: when the views follow Kafka).")
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as JSON.")
@click.pass_obj
@fail_cleanly
def verify_command(settings: Settings, store: bool, kafka: bool | None, as_json: bool) -> None:
    """Tamper evidence (防篡改): recompute every hash, report the first broken link; exit 1 if anything is."""
    check_kafka = kafka if kafka is not None else settings.views_follow_kafka
    if not (store or check_kafka):
        raise click.UsageError("nothing to verify: give --store or --kafka")
    verdicts: list[Verdict] = []
    if store:
        verdicts.append(_verify_store(settings))
    if check_kafka:
        verdicts.append(verify_kafka(kafka_bootstrap(settings), topics(settings), skipped=_skipped(settings)))
    comparison = compare(verdicts[0], verdicts[1]) if len(verdicts) == 2 else None
    intact = all(v.intact for v in verdicts) and (comparison is None or comparison.agree)
    if as_json:
        click.echo(json.dumps(_json(verdicts, comparison, intact), ensure_ascii=False))
    else:
        for verdict in verdicts:
            _print(verdict)
        if comparison is not None:
            _print_comparison(comparison)
    sys.exit(0 if intact else 1)


def _verify_store(settings: Settings) -> Verdict:
    """The store's verdict, read without writing: an audit neither creates tables nor seals an old store."""
    path = settings.event_store_path
    if not settings.uses_postgres and not path.is_file():
        raise GridloopError(f"no event store at {path}: give the data directory that holds events.sqlite")
    app = store_of(Gridloop, settings.event_store_env())
    try:
        return verify_store(app)
    finally:
        app.close()


def _skipped(settings: Settings) -> list[tuple[int, int]]:
    """The positions the store skipped (rolled-back inserts on PostgreSQL), which Kafka cannot hold either."""
    if not settings.uses_postgres:
        return []
    app = store_of(Gridloop, settings.event_store_env())
    try:
        return seal_reader(app.recorder).select_skipped()
    finally:
        app.close()


def _print(verdict: Verdict) -> None:
    rate = f"{verdict.events_checked / verdict.seconds:,.0f} events/s" if verdict.seconds else ""
    checked = (
        f"{verdict.events_checked:,} events and {verdict.checkpoints_checked:,} checkpoints up to position "
        f"{verdict.last_position:,} in {verdict.seconds:.1f} s ({rate})"
    )
    if verdict.intact:
        out.print(f"[bold]{verdict.source}[/bold]: [green]intact[/green] — {checked}")
        return
    counts = ", ".join(f"{kind} {count:,}" for kind, count in sorted(verdict.counts.items()))
    out.print(f"[bold]{verdict.source}[/bold]: [red bold]BROKEN[/red bold] — {counts}; {checked}")
    first = verdict.first_broken
    assert first is not None
    subject = f", version {first.version} of {first.aggregate}" if first.aggregate else ""
    out.print(f"  first broken link: position {first.position}{subject}: {escape(first.detail)}")
    shown = verdict.problems[:SHOWN]
    on_kafka = any(problem.where for problem in shown)
    table = Table("position", "kind", "aggregate", "version", "what is wrong", *(["record"] if on_kafka else []))
    for problem in shown:
        where = [problem.where] if on_kafka else []
        table.add_row(
            str(problem.position), problem.kind, problem.aggregate[:8], str(problem.version or ""),
            escape(problem.detail), *where,
        )  # fmt: skip
    out.print(table)
    total = sum(verdict.counts.values())
    if total > SHOWN:
        out.print(f"  … {total - SHOWN:,} more (--json lists the first {len(verdict.problems)})")
    for kind in sorted(verdict.counts):
        out.print(f"  [dim]{kind}: {KINDS[kind]}[/dim]")


def _print_comparison(comparison: Comparison) -> None:
    if comparison.position is None:
        out.print("store and Kafka: no common checkpoint yet (the log is shorter than a checkpoint interval)")
    elif comparison.agree:
        out.print(
            f"store and Kafka: [green]agree[/green] at checkpoint {comparison.position:,} "
            f"({comparison.store_hash[:16]}) — note it down elsewhere: it anchors everything before it"
        )
    for problem in comparison.problems:
        out.print(f"store and Kafka: [red bold]DIVERGED[/red bold] at position {problem.position}: {problem.detail}")


def _json(verdicts: list[Verdict], comparison: Comparison | None, intact: bool) -> dict[str, Any]:
    def one(verdict: Verdict) -> dict[str, Any]:
        data: dict[str, Any] = plain(verdict)
        data.pop("checkpoints")
        latest = max(verdict.checkpoints, default=None)
        data["latest_checkpoint"] = {"position": latest, "hash": verdict.checkpoints[latest]} if latest else None
        data["intact"] = verdict.intact
        data["first_broken"] = plain(verdict.first_broken)
        return data

    result: dict[str, Any] = {"intact": intact}
    for verdict in verdicts:
        result["store" if verdict.source == "event store" else "kafka"] = one(verdict)
    if comparison is not None:
        result["comparison"] = {**plain(comparison), "agree": comparison.agree}
    return result
