"""What a tamper-evidence check found: problems by position and kind, the verdict, the store against Kafka."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple
from uuid import UUID

MAX_LISTED = 100
"""How many problems a verdict lists (the first, by position); the counts cover all of them."""

KINDS: Mapping[str, str] = {
    "modified": "content differs from its seal: the event was modified after it was recorded",
    "relinked": "the hash chain breaks: the aggregate's previous event and its seal were altered, or this seal",
    "deleted": "a sealed position holds no event: the event was deleted",
    "unsealed": "an event without a seal: inserted behind gridloop's back",
    "moved": "an event at another event's sealed position: events were reordered or replaced",
    "out_of_order": "an aggregate's versions do not go up by one here: an event is missing or out of order",
    "missing": "positions not in the log at all (neither event nor seal; on Kafka: no record)",
    "duplicate": "a position on Kafka more than once",
    "checkpoint": "a checkpoint does not match the hashes it covers, or is missing",
    "undecodable": "bytes that do not decode to an event",
    "mislabelled": "a record whose key, topic or headers do not match its event",
    "diverged": "the store and Kafka disagree: one of them was rewritten",
}
"""Each kind of problem and what it means."""


class At(NamedTuple):
    """Where a problem is: the global position, the event there (if known), the Kafka record (if any)."""

    position: int
    aggregate: UUID | None = None
    version: int = 0
    where: str = ""


@dataclass(frozen=True)
class Problem:
    """One thing found wrong: where it is, and what it means in words."""

    kind: str
    position: int
    detail: str
    aggregate: str = ""
    version: int = 0
    where: str = ""
    """The record on Kafka (topic[partition]@offset); empty for the store."""


@dataclass(frozen=True)
class Verdict:
    """What one verification found: how much it checked, the first problems by position, counts by kind."""

    source: str
    events_checked: int
    checkpoints_checked: int
    last_position: int
    problems: tuple[Problem, ...]
    counts: Mapping[str, int]
    checkpoints: Mapping[int, str]
    """The checkpoint hashes the log holds (hex) by position: what another copy of the log is compared on."""
    seconds: float = 0.0

    @property
    def intact(self) -> bool:
        return not self.counts

    @property
    def first_broken(self) -> Problem | None:
        """The problem at the lowest position: where the log stops being what was recorded."""
        return self.problems[0] if self.problems else None


@dataclass
class Findings:
    """Problems as they are found: every one counted, the first MAX_LISTED by position kept."""

    counts: dict[str, int] = field(default_factory=dict)
    _kept: list[tuple[int, int, Problem]] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)

    def add(self, kind: str, at: At, detail: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        aggregate = str(at.aggregate) if at.aggregate is not None else ""
        problem = Problem(kind, at.position, detail, aggregate, at.version, at.where)
        entry = (-at.position, -next(self._order), problem)  # a max-heap on (position, order): the latest on top
        if len(self._kept) < MAX_LISTED:
            heapq.heappush(self._kept, entry)
        elif entry > self._kept[0]:
            heapq.heapreplace(self._kept, entry)

    def missing_runs(self, present: Callable[[int], bool], last: int, what: str) -> None:
        """One 'missing' problem per run of positions up to ``last`` that ``present`` denies."""
        start = None
        for position in range(1, last + 2):
            if position <= last and not present(position):
                start = position if start is None else start
            elif start is not None:
                span = f"position {start}" if start == position - 1 else f"positions {start}-{position - 1}"
                self.add("missing", At(start), f"{span} {what}")
                start = None

    def verdict(self, source: str, events: int, checkpoints: int, last: int, recorded: Mapping[int, bytes],
                seconds: float) -> Verdict:  # fmt: skip
        problems = tuple(problem for _, _, problem in sorted(self._kept, reverse=True))
        hashes = {position: recorded[position].hex() for position in sorted(recorded)}
        return Verdict(source, events, checkpoints, last, problems, dict(self.counts), hashes, seconds)


def short(value: bytes | None) -> str:
    """A hash as its first 12 hex digits, enough to tell two apart in a sentence."""
    return value.hex()[:12] if value else "none"


@dataclass(frozen=True)
class Comparison:
    """The store against Kafka: their latest common checkpoint, and what disagrees."""

    position: int | None
    store_hash: str
    kafka_hash: str
    problems: tuple[Problem, ...]

    @property
    def agree(self) -> bool:
        return not self.problems


def compare(store: Verdict, kafka: Verdict) -> Comparison:
    """The store and Kafka at their latest common checkpoint, and whether Kafka holds more than the store."""
    problems = []
    common = sorted(set(store.checkpoints) & set(kafka.checkpoints))
    position = common[-1] if common else None
    store_hash = store.checkpoints[position] if position is not None else ""
    kafka_hash = kafka.checkpoints[position] if position is not None else ""
    if position is not None and store_hash != kafka_hash:
        detail = (
            f"the store's checkpoint at {position} is {store_hash[:12]}, Kafka's is {kafka_hash[:12]}: "
            "one of them was rewritten"
        )
        problems.append(Problem("diverged", position, detail))
    if kafka.last_position > store.last_position:
        detail = (
            f"Kafka holds positions up to {kafka.last_position}, the store only up to {store.last_position}: "
            "events at the store's end were deleted"
        )
        problems.append(Problem("diverged", store.last_position + 1, detail))
    return Comparison(position, store_hash, kafka_hash, tuple(problems))
