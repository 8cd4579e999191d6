"""What a fault trial checks, as counts rather than assertions: the harness prints them and a test can doctor them.

Each checker takes plain inputs (records read back from Kafka, the store's notifications, two view stores) so that
it can be tried on a doctored input and shown to fail.
"""

from __future__ import annotations

import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from time import monotonic
from typing import Any
from uuid import UUID

from kafka import KafkaConsumer, TopicPartition

from engine import codec
from engine.kafka import POSITION, Record, client_config, to_record
from engine.relay import position_of
from projections.store import view_checksum
from projections.views import VIEW_NAMES

READ_GUARD = 120.0
"""How long reading a topic to its end may take before the trial is called hung (a guard, not a measure)."""


class Hung(RuntimeError):
    """Something that must happen did not within its guard."""


@dataclass(frozen=True)
class StoredEvent:
    """One notification of the store: where it stands in the log and which aggregate version it is."""

    position: int
    originator_id: UUID
    originator_version: int


@dataclass(frozen=True)
class LogCheck:
    """The read-committed event topics against the store's log."""

    stored: int
    on_kafka: int
    duplicates: int
    missing: int
    unknown: int
    reorderings: int
    foreign: int
    """Records without a position header: poison (or anything else not written by the relay)."""

    @property
    def ok(self) -> bool:
        return self.on_kafka == self.stored and not (
            self.duplicates or self.missing or self.unknown or self.reorderings
        )


def read_topics(bootstrap: str, topics: Iterable[str], isolation: str = "read_committed") -> list[Record]:
    """Every record of ``topics`` from the beginning to the end (read-committed: the last stable offset)."""
    consumer = KafkaConsumer(
        **client_config(bootstrap, isolation_level=isolation, enable_auto_commit=False, group_id=None)
    )
    try:
        partitions = [
            TopicPartition(topic, p) for topic in topics for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        ends: dict[TopicPartition, int] = consumer.end_offsets(partitions)
        records: list[Record] = []
        deadline = monotonic() + READ_GUARD
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            if monotonic() > deadline:
                raise Hung(f"reading {list(topics)} did not reach their ends {ends}")
            for tp, messages in consumer.poll(timeout_ms=500, max_records=10_000).items():
                records.extend(to_record(m) for m in messages if m.offset < ends[tp])
        return sorted(records, key=lambda r: (r.topic, r.partition, r.offset))
    finally:
        consumer.close()


def check_log(records: Sequence[Record], stored: Sequence[StoredEvent]) -> LogCheck:
    """Each stored event once on Kafka, and per partition and per aggregate in log order (no reordering)."""
    by_position = {e.position: e for e in stored}
    ours = [r for r in records if POSITION in r.headers]
    seen = Counter(position_of(r) for r in ours)
    reorderings = 0
    last_position: dict[tuple[str, int], int] = {}
    last_version: dict[bytes | None, int] = defaultdict(int)
    for r in ours:
        position, partition = position_of(r), (r.topic, r.partition)
        if position <= last_position.get(partition, 0):
            reorderings += 1
        last_position[partition] = max(position, last_position.get(partition, 0))
        event = by_position.get(position)
        if event is None:
            continue
        if event.originator_version != last_version[r.key] + 1 or r.key != str(event.originator_id).encode():
            reorderings += 1
        last_version[r.key] = max(event.originator_version, last_version[r.key])
    return LogCheck(
        stored=len(stored),
        on_kafka=len(seen),
        duplicates=sum(n - 1 for n in seen.values()),
        missing=len(set(by_position) - set(seen)),
        unknown=len(set(seen) - set(by_position)),
        reorderings=reorderings,
        foreign=len(records) - len(ours),
    )


def decoded_events(records: Sequence[Record]) -> list[StoredEvent]:
    """The relayed records as stored events (decoded values): for checking a log against itself in tests."""
    found = []
    for r in records:
        if POSITION in r.headers and r.value is not None:
            event = codec.decode(r.value)
            found.append(StoredEvent(position_of(r), event.originator_id, event.originator_version))
    return found


def missing_receipts(acknowledged: Mapping[int, UUID], stored: Sequence[StoredEvent]) -> int:
    """Acknowledged commands (the log position acknowledged → the aggregate touched) with no event of that aggregate
    stored at or before that position (the position is the command's last event, its receipt's)."""
    first: dict[UUID, int] = {}
    for e in stored:
        first.setdefault(e.originator_id, e.position)
    return sum(1 for position, aggregate in acknowledged.items() if first.get(aggregate, position + 1) > position)


def unequal_views(live: Any, rebuilt: Any, names: Iterable[str] = VIEW_NAMES) -> list[str]:
    """The views whose checksum in ``live`` differs from the one in ``rebuilt`` (both view stores)."""
    return [name for name in names if view_checksum(live, name) != view_checksum(rebuilt, name)]


def tracking(store_path: Path) -> dict[str, int]:
    """The view store's tracking rows (``view@topic:partition`` → next offset), read without a lock."""
    if not store_path.is_file():
        return {}
    with closing(sqlite3.connect(f"file:{store_path}?mode=ro", uri=True, timeout=30)) as connection:
        try:
            rows = connection.execute("SELECT application_name, notification_id FROM tracking").fetchall()
        except sqlite3.OperationalError:  # no worker has created its tables yet
            return {}
    return {str(name): int(position) for name, position in rows}


def caught_up(store_path: Path, records: Iterable[Record]) -> bool:
    """Whether every view has read every partition of ``records`` past its last record."""
    ends: dict[tuple[str, int], int] = {}
    for r in records:
        ends[(r.topic, r.partition)] = max(ends.get((r.topic, r.partition), 0), r.offset + 1)
    found = tracking(store_path)
    return all(
        found.get(f"{view}@{topic}:{partition}", 0) >= end
        for (topic, partition), end in ends.items()
        for view in VIEW_NAMES
    )
