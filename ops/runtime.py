"""Wiring for one process: the application, the view store, and what feeds the views in the configured mode."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any
from uuid import UUID

import structlog

from engine.application import Gridloop
from engine.clock import Clock
from engine.kafka import PlainWriter, Record, Topics, TransactionalWriter, read_committed_consumer, to_record
from engine.policies import NO_POLICY, processes
from engine.process import Processes, Refusal
from engine.relay import Relay, committed_position, store_of
from engine.working_time import EVERY_DAY, MONDAY_TO_FRIDAY, WorkingCalendar, china_calendar
from ops.config import Settings
from projections.kafka_runner import KafkaRunner
from projections.runner import EmbeddedRunner
from projections.store import Views, ViewStore
from projections.views import default_projections

log = structlog.get_logger()

POLICY_ACTOR = "policy:"
"""How the log names a process manager as the author of an event (``policy:<name>``)."""

MAX_TICKS = 8
"""Ticks at one moment until the managers issue nothing more (the ladder has five rungs); a bound, not a loop."""

_SHOWN = ("unit", "worker", "to_unit", "deadline", "level", "step", "threshold", "due", "reason")
"""The fields of a policy's event worth showing to an operator, when the event has them."""


@dataclass(frozen=True)
class PolicyEvent:
    """One event a process manager recorded: what it did, to which case, and the fields that say how."""

    event: str
    case_id: UUID
    actor: str
    details: dict[str, str]


@dataclass(frozen=True)
class PolicyRun:
    """What the process managers recorded in one run (oldest first) and the commands the engine refused them."""

    events: tuple[PolicyEvent, ...] = ()
    refusals: tuple[Refusal, ...] = ()

    def counts(self) -> dict[str, int]:
        """Events recorded by kind (Dispatched, Reassigned, DeadlineWarned, Escalated, HandedOver), by name."""
        return dict(sorted(Counter(e.event for e in self.events).items()))


@dataclass
class Runtime:
    """The parts of a running gridloop, opened together and closed together."""

    settings: Settings
    app: Gridloop
    views: Views
    """SQLite (ViewStore) or, in mode distributed, PostgreSQL (projections.store_postgres.PostgresViewStore)."""
    runner: EmbeddedRunner | None
    """The embedded runner (mode embedded); in modes kafka and distributed the views are fed by `gridloop project`."""
    processes: Processes | None = None
    """The configured dispatch policy and supervisor over the log; None when both are switched off."""
    closers: list[Callable[[], None]] = field(default_factory=list)
    _refusals_logged: int = 0

    def catch_up(self) -> int:
        """Embedded mode: fold what the store has into the views now. Kafka mode: nothing (the workers do it)."""
        return self.runner.run_until_caught_up() if self.runner is not None else 0

    def run_processes(self, now: datetime | None = None) -> PolicyRun:
        """Let the process managers react to the log's new events and, given ``now``, act on the time until
        nothing more is due at ``now``.

        Returns what they recorded; a refused command is logged (``policy_command_refused``), never retried here.
        """
        if self.processes is None:
            return PolicyRun()
        before = self.app.recorder.max_notification_id() or 0
        if now is None:
            self.processes.catch_up()
        else:
            # One tick moves a late case one rung up the ladder; after a pause, several rungs may be due at once.
            for _ in range(MAX_TICKS):
                if not self.processes.tick(now):
                    break
        refusals = tuple(self.processes.refusals[self._refusals_logged :])
        self._refusals_logged = len(self.processes.refusals)
        for refusal in refusals:
            log.warning("policy_command_refused", **refusal_fields(refusal))
        run = PolicyRun(tuple(policy_events(self.app, before)), refusals)
        if run.events or run.refusals:
            log.info("policies_acted", issued=run.counts(), refused=len(run.refusals), now=now and now.isoformat())
        return run

    def close(self) -> None:
        for close in reversed(self.closers):
            close()
        self.views.close()
        self.app.close()


def working_calendar(settings: Settings) -> WorkingCalendar:
    """The configured working calendar: its working days (china, weekdays, every-day) and working hours."""
    start, end = settings.working_day
    if settings.calendar == "china":
        return china_calendar(start=start, end=end)
    workdays = EVERY_DAY if settings.calendar == "every-day" else MONDAY_TO_FRIDAY
    return WorkingCalendar(start=start, end=end, workdays=workdays)


def policy_events(app: Gridloop, after: int) -> Iterator[PolicyEvent]:
    """The events process managers recorded after log position ``after``, oldest first."""
    start = after + 1
    while page := app.recorder.select_notifications(start, 500):
        for notification in page:
            event: Any = app.mapper.to_domain_event(notification)
            actor = getattr(event, "actor", "")
            if isinstance(actor, str) and actor.startswith(POLICY_ACTOR):
                details = {k: _text(getattr(event, k)) for k in _SHOWN if getattr(event, k, None) not in (None, "")}
                yield PolicyEvent(type(event).__name__, event.originator_id, actor, details)
        start = page[-1].id + 1


def refusal_fields(refusal: Refusal) -> dict[str, str]:
    """A refused policy command as plain fields: policy, command, command_id, case_id (empty when none), error."""
    command = refusal.command
    return {
        "policy": refusal.manager,
        "command": command.name if command else "",
        "command_id": command.command_id if command else "",
        "case_id": str(getattr(command, "case_id", "")),
        "error": refusal.error,
    }


def _text(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def open_runtime(settings: Settings, clock: Clock) -> Runtime:
    """Open (creating if needed) the event store and this mode's view store named by ``settings``."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.uses_postgres:
        app, views = _open_on_postgres(settings, clock)
    else:
        app = Gridloop(settings.event_store_env(), clock=clock, calendar=working_calendar(settings))
        views = ViewStore.open(settings.view_store_path)
    runner = None
    if not settings.views_follow_kafka:
        runner = EmbeddedRunner(
            app.recorder,
            app.mapper,
            views,
            default_projections(app.catalogue, app.calendar),
            batch_size=settings.projection_batch_size,
        )
    managers = None
    if settings.dispatch_policy != NO_POLICY or settings.supervise:
        managers = processes(app, dispatch=settings.dispatch_policy, supervise=settings.supervise)
    return Runtime(settings, app, views, runner, managers)


def _open_on_postgres(settings: Settings, clock: Clock) -> tuple[Gridloop, Views]:
    """Mode distributed: the event store and the views on PostgreSQL, each in its schema."""
    from ops.distributed import setting_up
    from projections.store_postgres import PostgresViewStore

    server = settings.postgres_server()
    with setting_up(settings, server):
        app = Gridloop(settings.event_store_env(server), clock=clock, calendar=working_calendar(settings))
        try:
            views = PostgresViewStore.connect(
                host=server.host,
                port=server.port,
                user=server.user,
                password=server.password,
                dbname=server.dbname,
                schema=settings.postgres_views_schema,
            )
        except BaseException:
            app.close()
            raise
    return app, views


def topics(settings: Settings) -> Topics:
    return Topics(settings.kafka_topic_prefix)


def kafka_bootstrap(settings: Settings) -> str:
    """The bootstrap address of the configured broker, which must be up (a clear error if it is not)."""
    from ops.kafka_broker import BrokerUnavailable, provisioner

    broker = provisioner(settings).status()
    if broker is None:
        raise BrokerUnavailable(
            f"no Kafka broker is up ({settings.kafka_provisioner} provisioner): start one with `gridloop kafka up`"
            + (f" or check kafka_bootstrap {settings.kafka_bootstrap}" if settings.kafka_bootstrap else "")
        )
    return broker.bootstrap


def ensure_topics(settings: Settings) -> list[str]:
    """Create the event topics and the consumer group's dead-letter topic if missing; returns those created."""
    from ops.kafka_broker import Broker, create_topics

    names = [*topics(settings).event_topics, topics(settings).dead_letters(settings.kafka_group)]
    broker = Broker(kafka_bootstrap(settings), settings.kafka_provisioner)
    return create_topics(broker, names, settings.kafka_partitions, settings.kafka_replication)


def open_relay(settings: Settings, app: Gridloop) -> tuple[Relay, Callable[[], None]]:
    """A relay for the store of ``app``, resumed from what Kafka holds; and how to close its clients."""
    bootstrap = kafka_bootstrap(settings)
    writer = TransactionalWriter(bootstrap, settings.relay_transactional_id)
    tails = read_committed_consumer(bootstrap)
    try:
        relay = Relay(
            app.recorder,
            app.mapper,
            writer,
            committed_position(tails),
            topics(settings),
            settings.relay_batch_size,
            # A second process builds each next batch while this one sends (the store is a file it can open).
            build_ahead=partial(store_of, type(app), dict(app.env)),
        )
    except BaseException:
        writer.close()
        tails.close()
        raise
    tails.close()

    def close() -> None:
        relay.close()
        writer.close()

    return relay, close


def open_kafka_runner(settings: Settings, rt: Runtime) -> KafkaRunner:
    """A projection worker of the configured consumer group, folding the relay's topics into ``rt``'s views."""
    bootstrap = kafka_bootstrap(settings)
    consumer = read_committed_consumer(
        bootstrap,
        group_id=settings.kafka_group,
        max_poll_records=settings.projection_batch_size,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_session_timeout_ms // 4,
    )
    dead_letters = PlainWriter(bootstrap)
    rt.closers.append(dead_letters.close)
    rt.closers.append(consumer.close)
    return KafkaRunner(
        consumer,
        rt.views,
        default_projections(rt.app.catalogue, rt.app.calendar),
        topics(settings),
        settings.kafka_group,
        dead_letters.send_now,
    )


def dead_letters(settings: Settings, limit: int = 1000) -> list[Record]:
    """The first ``limit`` records on the configured group's dead-letter topic (read-committed, no group)."""
    from kafka import TopicPartition

    consumer = read_committed_consumer(kafka_bootstrap(settings))
    try:
        topic = topics(settings).dead_letters(settings.kafka_group)
        found = consumer.partitions_for_topic(topic) or set()
        partitions = [TopicPartition(topic, p) for p in sorted(found)]
        if not partitions:
            return []
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(partitions)
        records: list[Record] = []
        while len(records) < limit and any(consumer.position(tp) < ends[tp] for tp in partitions):
            for messages in consumer.poll(timeout_ms=500).values():
                records.extend(to_record(m) for m in messages)
        return records[:limit]
    finally:
        consumer.close()
