"""Wiring for one process: the application, the view store, and what feeds the views in the configured mode."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from engine.application import Gridloop
from engine.clock import Clock
from engine.kafka import PlainWriter, Record, Topics, TransactionalWriter, read_committed_consumer, to_record
from engine.relay import Relay, committed_position, store_of
from ops.config import Settings
from projections.kafka_runner import KafkaRunner
from projections.runner import EmbeddedRunner
from projections.store import ViewStore
from projections.views import default_projections


@dataclass
class Runtime:
    """The parts of a running gridloop, opened together and closed together."""

    settings: Settings
    app: Gridloop
    views: ViewStore
    runner: EmbeddedRunner | None
    """The embedded runner (mode embedded); in mode kafka the views are fed by `gridloop project`."""
    closers: list[Callable[[], None]] = field(default_factory=list)

    def catch_up(self) -> int:
        """Embedded mode: fold what the store has into the views now. Kafka mode: nothing (the workers do it)."""
        return self.runner.run_until_caught_up() if self.runner is not None else 0

    def close(self) -> None:
        for close in reversed(self.closers):
            close()
        self.views.close()
        self.app.close()


def open_runtime(settings: Settings, clock: Clock) -> Runtime:
    """Open (creating if needed) the event store and this mode's view store named by ``settings``."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = Gridloop(settings.event_store_env(), clock=clock)
    views = ViewStore.open(settings.view_store_path)
    runner = None
    if settings.mode == "embedded":
        runner = EmbeddedRunner(
            app.recorder,
            app.mapper,
            views,
            default_projections(app.catalogue),
            batch_size=settings.projection_batch_size,
        )
    return Runtime(settings, app, views, runner)


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
        default_projections(rt.app.catalogue),
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
