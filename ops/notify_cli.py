"""`gridloop notify`: deliver the residents' notifications (办理进度告知) from the outbox, or show how they stand."""

from __future__ import annotations

import json
from datetime import timedelta

import click
from rich.table import Table

from ops.cli_support import fail_cleanly, local_time, out, plain, runtime
from ops.config import Settings
from ops.notify import Deliverer, delivery_path, make_sender
from ops.serve import stop_on_signals


@click.command(name="notify")
@click.option("--follow", is_flag=True, help="Keep delivering every --every seconds until stopped (SIGTERM / Ctrl-C).")
@click.option("--every", default=5.0, show_default=True, type=click.FloatRange(0.05, 3600), help="Seconds.")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 100_000), help="Messages per round.")
@click.option("--status", "show_status", is_flag=True, help="Counts and failures only; sends nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
@fail_cleanly
def notify_command(
    settings: Settings, follow: bool, every: float, limit: int, show_status: bool, as_json: bool
) -> None:
    """Send due notifications in log order with the configured sender (notify_sender), retrying failures."""
    sender = make_sender(settings)  # an adapter that cannot be made is refused before anything runs
    with runtime(settings) as rt:
        rt.catch_up()
        deliverer = Deliverer(
            delivery_path(settings), settings.view_store_path, sender, rt.app.clock,
            max_attempts=settings.notify_max_attempts, backoff=timedelta(seconds=settings.notify_backoff_seconds),
        )  # fmt: skip
        if show_status:
            _print_status(deliverer, as_json)
            return
        stop = stop_on_signals() if follow else None
        while True:
            done = deliverer.deliver(limit)
            if as_json:
                click.echo(json.dumps(plain(done), ensure_ascii=False))
            elif done.attempted or stop is None:
                click.echo(f"notifications: {done.sent} sent, {done.retrying} to retry, {done.failed} failed", err=True)
            # A full round leaves more behind: go on at once; otherwise wait for new events or due retries.
            if stop is None or (done.attempted < limit and stop.wait(every)) or stop.is_set():
                return
            rt.catch_up()


def _print_status(deliverer: Deliverer, as_json: bool) -> None:
    status = deliverer.status()
    if as_json:
        click.echo(json.dumps(plain(status), ensure_ascii=False))
        return
    out.print(
        f"outbox {status.outbox}: {status.sent} sent, {status.waiting} waiting, {status.retrying} retrying, "
        f"{status.failed} failed"
    )
    if status.failures:
        table = Table("notification", "attempts", "last error", "given up")
        for f in status.failures:
            table.add_row(f.id, str(f.attempts), f.last_error, local_time(f.updated_at))
        out.print(table)
