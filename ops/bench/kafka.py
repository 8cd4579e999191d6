"""Kafka benchmarks: the relay and the Kafka projection runner against raw kafka-python, same broker, same run."""

from __future__ import annotations

import cProfile
import pstats
import statistics
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from eventsourcing.utils import get_topic
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from engine import codec
from engine.application import Gridloop
from engine.kafka import RELAY_BATCHING, Headers, Topics, TransactionalWriter, client_config, read_committed_consumer
from engine.relay import Relay, store_of
from ops.bench import Measurement, sample_events
from ops.config import Settings, load_settings
from ops.kafka_broker import Broker, create_topics, provisioner
from projections.kafka_runner import KafkaRunner
from projections.store import ViewStore
from projections.views import default_projections

DEFAULTS = Settings()
PARTITIONS = DEFAULTS.kafka_partitions
RELAY_BATCH = DEFAULTS.relay_batch_size
POLL_RECORDS = 2000
"""Records per poll on both sides of the projection bench: KafkaRunner's default ``max_records``."""
JOIN_TIMEOUT = 60.0
CATCH_UP_TIMEOUT = 600.0
TEMPLATE = Topics("template")
"""The topics the relay's records are first recorded for; each run copies them to fresh topics."""
REPO = Path(__file__).resolve().parents[2]
STDLIB = sysconfig.get_path("stdlib")

Outgoing = tuple[str, int, bytes, bytes, list[tuple[str, bytes]]]
"""One record as the relay hands it to the producer: topic, partition, key, value, headers."""


class BenchFailed(RuntimeError):
    """A benchmark run did not do the work it measures (records missing, or dead-lettered)."""


@contextmanager
def bench_broker(settings: Settings | None = None) -> Iterator[Broker]:
    """The broker at GRIDLOOP_KAFKA_BOOTSTRAP when set; otherwise one of the bench's own, stopped afterwards."""
    settings = settings or load_settings()
    with tempfile.TemporaryDirectory(prefix="gridloop-bench-kafka-") as home:
        if settings.kafka_bootstrap:
            settings = replace(settings, kafka_provisioner="external")
        else:  # a local broker keeps its data (and its state file) in data_dir: a fresh one, not the user's
            settings = replace(settings, data_dir=Path(home))
        chosen = provisioner(settings)
        broker = chosen.up()
        try:
            yield broker
        finally:
            chosen.down()  # an external cluster's down() leaves it running


def kafka_paths(broker: Broker, n: int, repeats: int, profile: bool = True) -> list[Measurement]:
    """The relay (against two raw producers) and the Kafka projection runner (against a raw consumer) on N events."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        app, _ = sample_events(n, directory)
        try:
            recording = _Recording()
            Relay(app.recorder, app.mapper, recording, _nothing_committed, TEMPLATE, RELAY_BATCH).ship_all()
            bench = _KafkaBench(broker)
            try:
                return [
                    *bench.relay(app, recording.sent, repeats, profile),
                    bench.projection(app, recording.sent, directory, repeats, profile),
                ]
            finally:
                bench.close()
        finally:
            app.close()


class _Recording:
    """A LogWriter that keeps what the relay gives it instead of sending it: the relay's exact records."""

    def __init__(self) -> None:
        self.sent: list[Outgoing] = []

    def partitions(self, topic: str) -> int:
        return PARTITIONS

    def begin(self) -> None:
        pass

    def send(self, topic: str, partition: int, key: bytes, value: bytes, headers: Headers) -> None:
        self.sent.append((topic, partition, key, value, list(headers)))

    def commit(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


class _KafkaBench:
    """The runs of the Kafka benchmarks on one broker; every run writes to topics of its own."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.created: list[str] = []
        # Ends of partitions as read-committed readers see them, and as they are on the log.
        self.committed = read_committed_consumer(broker.bootstrap)
        self.everything = KafkaConsumer(**client_config(broker.bootstrap, isolation_level="read_uncommitted"))

    def fresh_topics(self) -> Topics:
        """New, empty event topics whose partitions all have a leader ready to take records."""
        topics = Topics(f"bench-{uuid.uuid4().hex[:12]}")
        create_topics(self.broker, topics.event_topics, PARTITIONS, DEFAULTS.kafka_replication)
        self.created.extend(topics.event_topics)
        # A new partition's leader can still answer NotLeaderForPartition for a moment; a producer meeting
        # that backs off and retries inside the timed run. Listing the partitions' ends waits it out here.
        self.everything.end_offsets(_partitions(topics))
        return topics

    def wait_for_markers(self, topics: Topics) -> None:
        """Wait until every partition's read-committed end is its log end.

        A commit returns once the transaction coordinator has it; the markers that make the records
        readable are written to the partitions after. Read before, the committed ends are still 0.
        """
        partitions = _partitions(topics)
        deadline = time.monotonic() + JOIN_TIMEOUT
        while self.committed.end_offsets(partitions) != self.everything.end_offsets(partitions):
            if time.monotonic() > deadline:
                raise BenchFailed(f"the commit markers on {topics.prefix}.* were not written in {JOIN_TIMEOUT:.0f} s")
            time.sleep(0.01)

    def close(self) -> None:
        """Close the bench's clients and delete every topic it made."""
        self.committed.close()
        self.everything.close()
        if self.created:
            admin = KafkaAdminClient(bootstrap_servers=self.broker.bootstrap.split(","), client_id="gridloop-bench")
            try:
                admin.delete_topics(self.created, timeout_ms=60_000)
            finally:
                admin.close()

    # -- the relay ---------------------------------------------------------------------------------

    def relay(self, app: Gridloop, records: Sequence[Outgoing], repeats: int, profile: bool) -> list[Measurement]:
        samples: dict[str, list[float]] = {"relay": [], "transactional": [], "idempotent": []}
        for _ in range(repeats):  # interleaved, so that the broker's state drifts over all sides alike
            samples["relay"].append(self.relay_once(app, len(records)))
            samples["transactional"].append(self.producer_once(records, transactional=True))
            samples["idempotent"].append(self.producer_once(records, transactional=False))
        rate = {side: len(records) / statistics.median(seconds) for side, seconds in samples.items()}
        profiled = ""
        if profile:
            profiler = cProfile.Profile()
            self.relay_once(app, len(records), profiler)
            profiled = profile_text(profiler)
        return [
            Measurement(
                "relay → Kafka (the target's ratio)",
                len(records),
                rate["relay"],
                rate["transactional"],
                f"kafka-python transactional producer: the same records pre-built, {RELAY_BATCH} per transaction",
                profiled,
            ),
            Measurement(
                "relay → Kafka (vs no transactions)",
                len(records),
                rate["relay"],
                rate["idempotent"],
                "kafka-python idempotent producer (acks=all): the same records pre-built, one flush",
            ),
        ]

    def relay_once(self, app: Gridloop, expected: int, profiler: cProfile.Profile | None = None) -> float:
        """Seconds the relay takes to ship the whole store to fresh topics (its producer already open)."""
        topics = self.fresh_topics()
        writer = TransactionalWriter(self.broker.bootstrap, f"{topics.prefix}-relay")
        try:
            # Fresh topics hold nothing to resume from; reading the tails back is start-up, not throughput.
            # Built ahead in a second process as ops.runtime.open_relay runs it (its start-up not timed either).
            relay = Relay(
                app.recorder,
                app.mapper,
                writer,
                _nothing_committed,
                topics,
                RELAY_BATCH,
                build_ahead=partial(store_of, type(app), dict(app.env)),
            )
            try:
                started = time.perf_counter()
                shipped = relay.ship_all() if profiler is None else profiler.runcall(relay.ship_all)
                seconds = time.perf_counter() - started
            finally:
                relay.close()
        finally:
            writer.close()
        if shipped != expected:
            raise BenchFailed(f"the relay shipped {shipped} events, the store holds {expected}")
        return seconds

    def producer_once(self, records: Sequence[Outgoing], transactional: bool) -> float:
        """Seconds a raw producer takes to send the relay's records, pre-built, to fresh topics."""
        topics = self.fresh_topics()
        ready = _retarget(records, topics)
        extra = {"transactional_id": f"{topics.prefix}-raw"} if transactional else {}
        producer = _producer(self.broker.bootstrap, **extra)
        try:
            if transactional:
                producer.init_transactions()
                started = time.perf_counter()
                _send_in_transactions(producer, ready)
            else:
                started = time.perf_counter()
                for topic, partition, key, value, headers in ready:
                    producer.send(topic, value=value, key=key, partition=partition, headers=headers)
                producer.flush()
            return time.perf_counter() - started
        finally:
            producer.close(timeout=10)

    # -- the projection ----------------------------------------------------------------------------

    def projection(
        self, app: Gridloop, records: Sequence[Outgoing], directory: Path, repeats: int, profile: bool
    ) -> Measurement:
        followed = set(_followed(TEMPLATE))
        expected = sum(1 for record in records if record[0] in followed)
        samples: dict[str, list[float]] = {"runner": [], "raw": []}
        for _ in range(repeats):
            samples["runner"].append(self.runner_once(app, records, expected, directory))
            samples["raw"].append(self.consumer_once(records, expected))
        rate = {side: expected / statistics.median(seconds) for side, seconds in samples.items()}
        profiled = ""
        if profile:
            profiler = cProfile.Profile()
            self.runner_once(app, records, expected, directory, profiler)
            profiled = profile_text(profiler)
        return Measurement(
            "projection from Kafka (all views)",
            expected,
            rate["runner"],
            rate["raw"],
            "kafka-python read_committed consumer + codec.decode of the same records, no views",
            profiled,
        )

    def runner_once(
        self,
        app: Gridloop,
        records: Sequence[Outgoing],
        expected: int,
        directory: Path,
        profiler: cProfile.Profile | None = None,
    ) -> float:
        """Seconds a KafkaRunner takes to fold the relay's records into a fresh view store (group already joined)."""
        topics = self.fresh_topics()
        group = f"{topics.prefix}-views"
        consumer = read_committed_consumer(
            self.broker.bootstrap, group_id=group, max_poll_records=DEFAULTS.projection_batch_size
        )
        store = ViewStore.open(directory / f"{topics.prefix}.sqlite")
        try:
            runner = KafkaRunner(
                consumer,
                store,
                default_projections(app.catalogue, app.calendar),
                topics,
                group,
                _no_dead_letters,
                max_records=POLL_RECORDS,
            )
            if set(runner.topics) != set(_followed(topics)):
                raise BenchFailed(f"the runner reads {runner.topics}, the raw consumer would read {_followed(topics)}")
            # The group is joined while the topics are still empty, so the join is timed on neither side.
            _join(lambda: bool(runner.assigned), lambda: runner.poll_once(0.1))
            self.fill(topics, records)
            started = time.perf_counter()
            read = runner.catch_up(CATCH_UP_TIMEOUT) if profiler is None else profiler.runcall(runner.catch_up)
            seconds = time.perf_counter() - started
        finally:
            consumer.close()
            store.close()
        if read != expected or runner.applied != expected or runner.dead_lettered:
            raise BenchFailed(f"the runner read {read} and applied {runner.applied} of {expected} records")
        return seconds

    def consumer_once(self, records: Sequence[Outgoing], expected: int) -> float:
        """Seconds a raw read_committed consumer takes to read and decode the same records (group already joined)."""
        topics = self.fresh_topics()
        consumer = read_committed_consumer(
            self.broker.bootstrap, group_id=f"{topics.prefix}-raw", max_poll_records=DEFAULTS.projection_batch_size
        )
        try:
            consumer.subscribe(_followed(topics))
            _join(lambda: bool(consumer.assignment()), lambda: consumer.poll(timeout_ms=100))
            self.fill(topics, records)
            started = time.perf_counter()
            read = decode_to_ends(consumer)
            seconds = time.perf_counter() - started
        finally:
            consumer.close()
        if read != expected:
            raise BenchFailed(f"the raw consumer read {read} of {expected} records")
        return seconds

    def fill(self, topics: Topics, records: Sequence[Outgoing]) -> None:
        """Write the relay's records to ``topics`` as the relay does (same transactions); readable once it returns."""
        producer = _producer(self.broker.bootstrap, transactional_id=f"{topics.prefix}-fill")
        try:
            producer.init_transactions()
            _send_in_transactions(producer, _retarget(records, topics))
        finally:
            producer.close(timeout=10)
        self.wait_for_markers(topics)


def _producer(bootstrap: str, **extra: Any) -> KafkaProducer:
    """A raw kafka-python producer as the relay's writer configures it (idempotent, acks=all, same batching)."""
    return KafkaProducer(**client_config(bootstrap, enable_idempotence=True, acks="all", **RELAY_BATCHING, **extra))


def _send_in_transactions(producer: KafkaProducer, records: Sequence[Outgoing]) -> None:
    for start in range(0, len(records), RELAY_BATCH):
        producer.begin_transaction()
        for topic, partition, key, value, headers in records[start : start + RELAY_BATCH]:
            producer.send(topic, value=value, key=key, partition=partition, headers=headers)
        producer.commit_transaction()


def _partitions(topics: Topics) -> list[TopicPartition]:
    return [TopicPartition(topic, partition) for topic in topics.event_topics for partition in range(PARTITIONS)]


def _retarget(records: Sequence[Outgoing], topics: Topics) -> list[Outgoing]:
    """The same records, addressed to ``topics`` instead of the template's."""
    start = len(TEMPLATE.prefix) + 1
    return [
        (topics.of(topic[start:]), partition, key, value, headers) for topic, partition, key, value, headers in records
    ]


def _followed(topics: Topics) -> list[str]:
    """The topics of the aggregates whose events some view handles: what the runner subscribes to."""
    handled = {topic for projection in default_projections() for topic in projection.topics}
    return [
        topics.of(folder)
        for aggregate, folder in codec.AGGREGATES.items()
        if any(topic.startswith(get_topic(aggregate) + ".") for topic in handled)
    ]


def _nothing_committed(topics: Sequence[str]) -> None:
    """The relay's tail reader for fresh topics: nothing is committed there yet."""
    return None


def _join(joined: Callable[[], bool], poll: Callable[[], object]) -> None:
    deadline = time.monotonic() + JOIN_TIMEOUT
    while not joined():
        if time.monotonic() > deadline:
            raise BenchFailed(f"the consumer group gave no partitions within {JOIN_TIMEOUT:.0f} s")
        poll()


def _no_dead_letters(topic: str, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> None:
    raise BenchFailed(f"a bench record was dead-lettered to {topic}: {dict(headers).get('dlq_error', b'')!r}")


def profile_text(profiler: cProfile.Profile, top: int = 12) -> str:
    """Where a profiled run spent its time: the functions with the most own time, then gridloop's by cumulative time."""
    stats: Any = pstats.Stats(profiler)
    total = stats.total_tt
    entries = [(where, own, cumulative, calls) for where, (_, calls, own, cumulative, _) in stats.stats.items()]
    lines = [f"{total:.2f} s in the profiled thread", "", "   own s  own %    cum s     calls  function (by own time)"]
    for where, own, cumulative, calls in sorted(entries, key=lambda e: -e[1])[:top]:
        lines.append(f"{own:8.3f} {100 * own / total:5.1f}% {cumulative:8.3f} {calls:9d}  {_where(*where)}")
    ours = [e for e in entries if e[0][0].startswith(str(REPO)) and "/.venv/" not in e[0][0]]
    lines += ["", "   cum s  cum %              gridloop function (by cumulative time)"]
    for where, _, cumulative, calls in sorted(ours, key=lambda e: -e[2])[:top]:
        lines.append(f"{cumulative:8.3f} {100 * cumulative / total:5.1f}% {calls:15d}  {_where(*where)}")
    return "\n".join(lines)


def _where(filename: str, line: int, name: str) -> str:
    if filename == "~":
        return name  # a built-in, e.g. <method 'execute' of 'sqlite3.Cursor' objects>
    path = filename.split("site-packages/", 1)[-1] if "site-packages/" in filename else filename
    path = path.removeprefix(str(REPO) + "/").removeprefix(STDLIB + "/")
    return f"{path}:{line}({name})"


def decode_to_ends(consumer: Any) -> int:
    """The raw baseline's work: poll the consumer's assigned partitions to their ends, decoding every record
    (no views); returns how many were read."""
    assigned = list(consumer.assignment())
    ends = consumer.end_offsets(assigned)
    read = 0
    while any(consumer.position(tp) < ends[tp] for tp in assigned):
        for messages in consumer.poll(timeout_ms=200, max_records=POLL_RECORDS).values():
            for message in messages:
                codec.decode(message.value)
            read += len(messages)
    return read
