"""`gridloop relay`: ship the event store's log to Kafka; in mode distributed only while holding the relay lock."""

from __future__ import annotations

import threading

import click
import structlog

from engine.relay import Relay
from ops.cli_support import fail_cleanly, runtime
from ops.config import Settings
from ops.distributed import RELAY, Election, elected
from ops.leader import LeadershipLost
from ops.runtime import ensure_topics, open_relay
from ops.serve import stop_on_signals

log = structlog.get_logger()

POLL_SECONDS = 0.2
"""How often an idle relay looks at the store (and, in mode distributed, at its lock's session)."""

MOVING_POLL_SECONDS = 0.005
"""How soon a relay looks again after shipping a short batch: the store is moving, and each event waits
for the next look before a worker can read it. Each idle look doubles the wait, up to POLL_SECONDS."""


@click.command(name="relay")
@click.option("--follow", is_flag=True, help="Keep shipping new events until stopped (SIGTERM / Ctrl-C).")
@click.option(
    "--wait",
    is_flag=True,
    help="Mode distributed, without --follow: wait until no other relay is active, then ship (default: exit 0).",
)
@click.pass_obj
@fail_cleanly
def relay_command(settings: Settings, follow: bool, wait: bool) -> None:
    """Ship the event store's log to Kafka, each event once, resuming from what Kafka already holds.

    Mode distributed: one relay of a deployment is active, the one holding the relay lock (PostgreSQL);
    with --follow the others stand by and take over when it ends. Without --follow a relay that finds
    another active ships nothing and exits 0 (or waits for it with --wait)."""
    stop = stop_on_signals() if follow or wait else None
    with runtime(settings) as rt, elected(settings, RELAY, stop) as election:
        if not election.active:
            if stop is None:
                click.echo("another relay is active (it holds the relay lock): nothing shipped")
            return
        # Only the elected relay opens its producer: opening one fences the producer of the same transactional id.
        ensure_topics(settings)
        shipper, close = open_relay(settings, rt.app)
        rt.closers.append(close)
        start = shipper.position
        try:
            if follow:
                assert stop is not None
                _follow(shipper, election, stop, settings.relay_batch_size)
            election.check()
            shipper.ship_all()
        except LeadershipLost as exc:
            log.error("relay_lock_lost", position=shipper.position, error=str(exc))
            raise
        click.echo(f"Kafka holds the log up to position {shipper.position} ({shipper.position - start} new)")


def _follow(shipper: Relay, election: Election, stop: threading.Event, batch_size: int) -> None:
    """Ship batch after batch until ``stop``, making sure before each that this relay still holds its lock.

    A full batch is followed by the next at once; a short one by a look MOVING_POLL_SECONDS later, and
    an empty one by a wait twice the last, up to POLL_SECONDS: at a steady 1k events/s an event waits
    a few milliseconds for the relay, not up to POLL_SECONDS, and an idle store costs five looks a second.
    """
    wait = MOVING_POLL_SECONDS
    while not stop.is_set():
        election.check()
        shipped = shipper.ship_batch()
        if shipped >= batch_size:
            continue
        wait = MOVING_POLL_SECONDS if shipped else min(wait * 2, POLL_SECONDS)
        stop.wait(wait)
