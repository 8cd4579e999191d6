"""In-memory stand-ins for Kafka that keep its rules, for fast tests of relay and runner logic."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from kafka import TopicPartition

from engine.kafka import POSITION, Headers, Record, Topics
from engine.relay import position_of

PARTITIONS = 3


class TransactionalLog:
    """Kafka as the relay sees it: topics of partitions, records visible only once their transaction commits."""

    def __init__(self, topics: Topics, fail_commit_after: int | None = None) -> None:
        self.committed: dict[tuple[str, int], list[tuple[bytes, bytes, dict[str, bytes]]]] = {
            (topic, p): [] for topic in topics.event_topics for p in range(PARTITIONS)
        }
        self._open: list[tuple[str, int, bytes, bytes, dict[str, bytes]]] | None = None
        self.commits = 0
        self.aborts = 0
        self._fail_commit_after = fail_commit_after

    def partitions(self, topic: str) -> int:
        return PARTITIONS

    def begin(self) -> None:
        assert self._open is None, "a transaction is already open"
        self._open = []

    def send(self, topic: str, partition: int, key: bytes, value: bytes, headers: Headers) -> None:
        assert self._open is not None, "send outside a transaction"
        self._open.append((topic, partition, key, value, dict(headers)))

    def commit(self) -> None:
        assert self._open is not None
        if self._fail_commit_after is not None and self.commits >= self._fail_commit_after:
            raise ConnectionError("broker went away during commit")
        for topic, partition, key, value, headers in self._open:
            self.committed[(topic, partition)].append((key, value, headers))
        self._open = None
        self.commits += 1

    def abort(self) -> None:
        self._open = None
        self.aborts += 1

    def close(self) -> None:
        pass

    def read_tail(self, topics: Sequence[str]) -> Record | None:
        tails = [
            Record(topic, partition, len(records) - 1, *records[-1])
            for (topic, partition), records in self.committed.items()
            if topic in topics and records
        ]
        return max(tails, key=position_of, default=None)

    def positions(self) -> list[int]:
        return sorted(int(h[POSITION]) for records in self.committed.values() for _, _, h in records)

    def messages(self, topic: str, partition: int) -> list[Any]:
        """The committed records of one partition as kafka-python ConsumerRecords look to gridloop."""
        return [
            SimpleNamespace(topic=topic, partition=partition, offset=offset, key=k, value=v, headers=list(h.items()))
            for offset, (k, v, h) in enumerate(self.committed[(topic, partition)])
        ]


class FakeConsumer:
    """A group member that is given every partition of its topics at the first poll and honours seek."""

    def __init__(self, log: TransactionalLog, extra: dict[tuple[str, int], list[Any]] | None = None) -> None:
        self._log = log
        self._extra = extra or {}
        self._listener: Any = None
        self._topics: Sequence[str] = ()
        self.positions: dict[TopicPartition, int] = {}

    def subscribe(self, topics: Sequence[str], listener: Any) -> None:
        self._topics, self._listener = topics, listener

    def topics(self) -> set[str]:
        return set(self._topics)

    def records(self, tp: TopicPartition) -> list[Any]:
        return self._log.messages(tp.topic, tp.partition) + self._extra.get((tp.topic, tp.partition), [])

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        if self._listener is not None:
            assigned = {TopicPartition(t, p) for t in self._topics for p in range(PARTITIONS)}
            self.positions = dict.fromkeys(assigned, 0)
            self._listener.on_partitions_assigned(assigned)
            self._listener = None
        polled: dict[TopicPartition, list[Any]] = {}
        for tp in sorted(self.positions):
            batch = [m for m in self.records(tp) if m.offset >= self.positions[tp]][:max_records]
            if batch:
                polled[tp] = batch
                self.positions[tp] = batch[-1].offset + 1
        return polled

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def commit_async(self, offsets: Any) -> None:
        pass
