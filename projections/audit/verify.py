"""Tamper evidence checked (验真): the store's seals and the Kafka log's hash headers, recomputed from the events."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import Mapper, Notification, OperationalError
from kafka import TopicPartition

from engine import codec
from engine.errors import UnknownReference
from engine.kafka import (
    CHECKPOINT,
    EVENT_TYPE,
    HASH,
    POSITION,
    PREV_HASH,
    Record,
    Topics,
    read_committed_consumer,
    to_record,
)
from engine.seal import CHECKPOINT_EVERY, GENESIS, HASH_SIZE, Checkpoint, Seal, checkpoint, content_hash, link
from engine.sealing import seal_reader
from projections.audit.verdict import KINDS, At, Findings, Verdict, short

# -- the event store ----------------------------------------------------------------------------------


def verify_store(app: Application[UUID], batch_size: int = 5000) -> Verdict:
    """Recompute every event's seal from the notification log, and check the chains and the checkpoints."""
    started = time.perf_counter()
    seals = seal_reader(app.recorder)
    try:
        last_sealed = seals.max_sealed_position()
        skipped = {p for first, last in seals.select_skipped() for p in range(first, last + 1)}
    except OperationalError:  # opened without creating tables (as the audit opens it), and they are not there
        findings = Findings()
        detail = "the store has no seal tables: recorded before sealing and not opened by gridloop since, or dropped"
        findings.add("unsealed", At(1), detail)
        last = app.recorder.max_notification_id() or 0
        return findings.verdict("event store", 0, 0, last, {}, time.perf_counter() - started)
    last = max(app.recorder.max_notification_id() or 0, last_sealed)
    audit = _StoreAudit(app.mapper, {c.position: c for c in seals.select_checkpoints()}, last_sealed, skipped)
    for first in range(1, last + 1, batch_size):
        end = min(last, first + batch_size - 1)
        events = {n.id: n for n in app.recorder.select_notifications(first, batch_size, stop=end)}
        sealed = {s.position: s for s in seals.select_seals(first, end)}
        for position in range(first, end + 1):
            audit.check(position, events.get(position), sealed.get(position))
    audit.finish(last)
    recorded = {p: c.hash for p, c in audit.recorded.items()}
    seconds = time.perf_counter() - started
    return audit.findings.verdict("event store", audit.events, audit.checkpoints_checked, last, recorded, seconds)


class _StoreAudit:
    """The store's checks, position by position: each seal against its event, the chains, the checkpoints."""

    def __init__(
        self, mapper: Mapper[UUID], recorded: dict[int, Checkpoint], last_sealed: int, skipped: set[int]
    ) -> None:
        self.mapper = mapper
        self.skipped = skipped  # drawn by transactions that rolled back (PostgreSQL's sequence): never held anything
        self.recorded = recorded
        self.last_sealed = last_sealed
        self.findings = Findings()
        self.events = self.checkpoints_checked = 0
        self.versions: dict[UUID, int] = {}  # per aggregate: the highest version of an event seen
        self.links: dict[UUID, tuple[int, bytes, int]] = {}  # per aggregate: the last seal's version, hash, position
        self.window: list[bytes] = []  # the seal hashes since the last checkpoint
        self.empty: set[int] = set()  # positions with neither event nor seal

    def check(self, position: int, event: Notification | None, sealed: Seal | None) -> None:
        if sealed is not None:
            self._follow_seal(sealed)
            self.window.append(sealed.hash)
        if event is not None:
            self._check_event(position, event, sealed)
        elif sealed is not None:
            at = At(position, sealed.originator_id, sealed.originator_version)
            self.findings.add("deleted", at, f"position {position} is sealed but holds no event: the event was deleted")
        else:
            self.empty.add(position)
        if position % CHECKPOINT_EVERY == 0 and position <= self.last_sealed:
            self._check_checkpoint(position)

    def _check_event(self, position: int, event: Notification, sealed: Seal | None) -> None:
        self.events += 1
        aggregate = UUID(str(event.originator_id))
        at = At(position, aggregate, event.originator_version)
        if sealed is None:
            self.findings.add("unsealed", at, "the event has no seal: it was inserted behind gridloop's back")
        elif (sealed.originator_id, sealed.originator_version) != (at.aggregate, at.version):
            detail = f"its seal is of version {sealed.originator_version} of {sealed.originator_id}: events were moved"
            self.findings.add("moved", at, f"{detail} (reordered) or replaced")
        else:
            try:
                content = content_hash(self.mapper.to_domain_event(event))
            except Exception as exc:  # whatever a corrupted state makes the mapper or the canonical form raise
                self.findings.add("undecodable", at, f"the stored state does not decode: {type(exc).__name__}: {exc}")
            else:
                if link(sealed.prev_hash, content) != sealed.hash:
                    self.findings.add("modified", at, KINDS["modified"])
        last = self.versions.get(aggregate, 0)
        if at.version > last + 1:
            detail = f"version {at.version} follows version {last}: version {last + 1} is missing (deleted)"
            self.findings.add("out_of_order", at, f"{detail} or out of order")
        elif at.version <= last:
            detail = f"version {at.version} comes after version {last}: the aggregate's events were reordered"
            self.findings.add("out_of_order", at, detail)
        self.versions[aggregate] = max(last, at.version)

    def _follow_seal(self, sealed: Seal) -> None:
        at = At(sealed.position, sealed.originator_id, sealed.originator_version)
        last = self.links.get(sealed.originator_id)
        version, prev, where = (1, GENESIS, 0) if last is None else (last[0] + 1, last[1], last[2])
        if sealed.originator_version != version:
            detail = f"the seal of version {at.version} follows the seal of version {version - 1}"
            self.findings.add("out_of_order", at, f"{detail}: seals were moved or deleted")
        elif sealed.prev_hash != prev:
            detail = (
                f"its seal chains to {short(sealed.prev_hash)}, but the seal of version {version - 1} (position "
                f"{where}) is {short(prev)}: that event was altered and its seal recomputed, or a seal was edited"
            )
            self.findings.add("relinked", at, detail)
        if last is None or sealed.originator_version > last[0]:
            self.links[sealed.originator_id] = (sealed.originator_version, sealed.hash, sealed.position)

    def _check_checkpoint(self, position: int) -> None:
        window, self.window = self.window, []
        recorded = self.recorded.get(position)
        if recorded is None:
            self.findings.add("checkpoint", At(position), f"no checkpoint at position {position}: it was deleted")
            return
        self.checkpoints_checked += 1
        first = position - CHECKPOINT_EVERY + 1
        before = self.recorded.get(first - 1)
        prev = GENESIS if first == 1 else before.hash if before is not None else None
        if prev is not None and recorded.prev != prev:
            detail = f"the checkpoint chains to {short(recorded.prev)}, but the one at {first - 1} is {short(prev)}"
            self.findings.add("checkpoint", At(position), f"{detail}: the checkpoints were rewritten")
        elif checkpoint(recorded.prev, position, window) != recorded.hash:
            detail = f"the checkpoint does not match the seals of positions {first}-{position}"
            self.findings.add("checkpoint", At(position), f"{detail}: a seal in that range was altered or deleted")

    def _present(self, position: int) -> bool:
        return position not in self.empty or position in self.skipped

    def finish(self, last: int) -> None:
        self.findings.missing_runs(self._present, last, "holds neither an event nor a seal")
        for position in sorted(p for p in self.recorded if p > last):
            detail = f"a checkpoint covers position {position}, past the log's end ({last})"
            self.findings.add("deleted", At(position), f"{detail}: events at the end were deleted with their seals")


# -- the Kafka log ------------------------------------------------------------------------------------


def verify_kafka(
    bootstrap: str, topics: Topics, idle_timeout: float = 60.0, skipped: Sequence[tuple[int, int]] = ()
) -> Verdict:
    """Read every event topic from the beginning (read-committed, no consumer group) and check each record's
    hash against its own content, each aggregate's chain in partition order, the positions and checkpoints.

    ``skipped``: the runs of positions the store records as never taken (``select_skipped``: PostgreSQL's
    sequence moves on past a rolled-back insert); no record is expected there."""
    started = time.perf_counter()
    consumer = read_committed_consumer(bootstrap, group_id=None)
    try:
        partitions: list[TopicPartition] = []
        for topic in topics.event_topics:
            found = consumer.partitions_for_topic(topic)
            if not found:
                known = sorted(t for t in consumer.topics() if t.startswith(f"{topics.prefix}."))
                raise UnknownReference("topic", topic, known)
            partitions.extend(TopicPartition(topic, p) for p in sorted(found))
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends: dict[TopicPartition, int] = consumer.end_offsets(partitions)
        audit = _KafkaAudit(topics, {p for first, last in skipped for p in range(first, last + 1)})
        moved = time.monotonic()
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            if time.monotonic() - moved > idle_timeout:
                raise TimeoutError(f"reading {list(topics.event_topics)} made no progress for {idle_timeout} s")
            for tp, messages in consumer.poll(timeout_ms=500, max_records=5000).items():
                moved = time.monotonic()
                for message in messages:
                    if message.offset < ends[tp]:
                        audit.check(to_record(message))
    finally:
        consumer.close()
    audit.finish()
    seconds = time.perf_counter() - started
    return audit.findings.verdict("kafka", audit.events, audit.checkpoints_checked, audit.last, audit.recorded, seconds)


class _KafkaAudit:
    """The Kafka log's checks, record by record in each partition's order, then across partitions."""

    def __init__(self, topics: Topics, skipped: set[int] | None = None) -> None:
        self.topics = topics
        self.skipped = skipped or set()  # positions no committed transaction took: nothing to find there
        self.findings = Findings()
        self.events = self.checkpoints_checked = self.last = 0
        self.seen = bytearray(1)  # per position: 0 not seen, 1 seen, 2 seen and its hash checked out
        self.hashes = bytearray(HASH_SIZE)  # per position: the hash header of its record
        self.recorded: dict[int, bytes] = {}  # the checkpoint headers, by position
        self.chains: dict[UUID, tuple[int, bytes | None, str]] = {}  # per aggregate: version, hash, topic[partition]
        self.last_on_partition: dict[str, int] = {}  # per topic[partition]: the position of the record before

    def check(self, record: Record) -> None:
        self.events += 1
        raw = record.header(POSITION)
        position = int(raw) if raw.isdigit() else 0
        if position < 1:
            self.findings.add("mislabelled", At(0, where=record.origin), "the record has no position header")
            return
        try:
            event: Any = codec.decode(record.value or b"")
        except codec.UndecodableRecord as exc:
            self.findings.add("undecodable", At(position, where=record.origin), str(exc))
            self._place(At(position, where=record.origin), None, ok=False)
            return
        at = At(position, UUID(str(event.originator_id)), event.originator_version, record.origin)
        folder, name = codec.event_type(event)
        if record.key != str(at.aggregate).encode() or record.topic != self.topics.of(folder):
            detail = f"the record (key {record.key!r} on {record.topic}) does not carry its event's key or topic"
            self.findings.add("mislabelled", at, f"{detail} ({folder}.{name})")
        elif record.header(EVENT_TYPE) != f"{folder}.{name}":
            detail = f"its event_type header says {record.header(EVENT_TYPE)!r}, the event is {folder}.{name}"
            self.findings.add("mislabelled", at, detail)
        prev, hash_ = _hex(record.headers.get(PREV_HASH)), _hex(record.headers.get(HASH))
        holds = False
        if prev is None or hash_ is None:
            detail = (
                "the record has no prev_hash and hash headers: relayed before sealing, or produced around the relay"
            )
            self.findings.add("unsealed", at, detail)
        elif not (holds := link(prev, content_hash(event)) == hash_):
            detail = "content differs from its hash header: the record was modified after it was relayed, or forged"
            self.findings.add("modified", at, detail)
        self._follow(at, f"{record.topic}[{record.partition}]", prev, hash_)
        self._place(at, hash_, holds)
        if CHECKPOINT in record.headers:
            found = _hex(record.headers[CHECKPOINT])
            if found is None or position % CHECKPOINT_EVERY:
                self.findings.add(
                    "mislabelled", at, "a checkpoint header that is no hash, or at no checkpoint position"
                )
            elif self.recorded.setdefault(position, found) != found:
                self.findings.add("checkpoint", at, "two records carry different checkpoints for this position")

    def _follow(self, at: At, partition: str, prev: bytes | None, hash_: bytes | None) -> None:
        before = self.last_on_partition.get(partition, 0)
        if at.position <= before:  # the relay writes each partition in position order
            detail = f"position {at.position} comes after position {before} on {partition}: records were reordered"
            self.findings.add("out_of_order", at, f"{detail}, or one was produced again")
        self.last_on_partition[partition] = at.position
        assert at.aggregate is not None
        last = self.chains.get(at.aggregate)
        if last is not None and last[2] != partition:
            self.findings.add("mislabelled", at, f"the aggregate's records are on {last[2]} and on {partition}")
        version, last_hash = (0, GENESIS) if last is None else (last[0], last[1])
        if at.version > version + 1:
            detail = f"version {at.version} follows version {version} on {partition}: version {version + 1} is missing"
            self.findings.add("out_of_order", at, f"{detail} (deleted) or out of order")
        elif at.version <= version:
            detail = f"version {at.version} comes after version {version} on {partition}: the aggregate's records"
            self.findings.add("out_of_order", at, f"{detail} were reordered or repeated")
        elif prev is not None and last_hash is not None and prev != last_hash:
            detail = f"its prev_hash is {short(prev)}, but version {version}'s hash is {short(last_hash)}"
            self.findings.add("relinked", at, f"{detail}: that record was altered, or this one")
        if last is None or at.version > version:
            self.chains[at.aggregate] = (at.version, hash_, partition)

    def _place(self, at: At, hash_: bytes | None, ok: bool) -> None:
        position = at.position
        if position >= len(self.seen):
            grow = max(position + 1, 2 * len(self.seen)) - len(self.seen)
            self.seen.extend(bytes(grow))
            self.hashes.extend(bytes(grow * HASH_SIZE))
        self.last = max(self.last, position)
        if self.seen[position]:
            self.findings.add("duplicate", at, f"position {position} is on Kafka more than once (again at {at.where})")
            if self.seen[position] == 2 or not ok:  # the checkpoint is checked with the record whose hash holds
                return
        self.seen[position] = 2 if ok else 1
        if hash_ is not None:
            self.hashes[position * HASH_SIZE : (position + 1) * HASH_SIZE] = hash_

    def _present(self, position: int) -> bool:
        return bool(self.seen[position]) or position in self.skipped

    def finish(self) -> None:
        self.findings.missing_runs(self._present, self.last, "is not on Kafka: deleted, or lost")
        prev: bytes | None = GENESIS  # the checkpoint before: as recorded, else as recomputed (None if unknown)
        for position in range(CHECKPOINT_EVERY, self.last + 1, CHECKPOINT_EVERY):
            first = position - CHECKPOINT_EVERY + 1
            recorded = self.recorded.get(position)
            computed = None
            if self.skipped.isdisjoint(range(first, position + 1)):
                if prev is not None and all(self.seen[first : position + 1]):
                    computed = checkpoint(
                        prev, position, [bytes(self.hashes[first * HASH_SIZE : (position + 1) * HASH_SIZE])]
                    )
            elif prev is not None and all(self._present(p) for p in range(first, position + 1)):
                taken = [p for p in range(first, position + 1) if p not in self.skipped]
                hashes = [bytes(self.hashes[p * HASH_SIZE : (p + 1) * HASH_SIZE]) for p in taken]
                computed = checkpoint(prev, position, hashes)
            if recorded is None and self.seen[position]:
                detail = f"the record at position {position} carries no checkpoint header: it was removed"
                self.findings.add("checkpoint", At(position), detail)
            elif recorded is not None and computed is not None:
                self.checkpoints_checked += 1
                if computed != recorded:
                    detail = f"the checkpoint does not match the hash headers of positions {first}-{position}"
                    self.findings.add("checkpoint", At(position), f"{detail}: a record in that range was altered")
            prev = recorded if recorded is not None else computed


def _hex(value: bytes | None) -> bytes | None:
    """A hash header's bytes (None when it is missing or not a hash in hex)."""
    if value is None:
        return None
    try:
        found = bytes.fromhex(value.decode("ascii"))
    except ValueError:
        return None
    return found if len(found) == HASH_SIZE else None
