"""The Avro decoder fed garbage: random, truncated, bit-flipped and re-fingerprinted records.

Whatever the bytes, ``engine.codec.decode`` answers with an event or ``UndecodableRecord`` saying what was wrong,
never another exception and never a hang; and the Kafka worker dead-letters each such record once, with its error,
and carries on: no crash loop, no re-delivery loop. (On a real broker: tests/integration/test_dead_letters*.py.)
"""

from __future__ import annotations

import copy
import dataclasses
import random
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from engine import codec
from engine.application import Gridloop
from engine.clock import ManualClock
from engine.kafka import DEAD_ATTEMPTS, DEAD_ERROR, DEAD_OFFSET, DEAD_PARTITION, DEAD_TOPIC, POSITION, Topics
from engine.relay import Relay
from projections.kafka_runner import HELD_BEHIND, KafkaRunner
from projections.store import ViewStore
from projections.views import default_projections
from schemas.registry import registry
from tests.fuzz.conftest import fuzz_settings
from tests.kafka_fakes import PARTITIONS, FakeConsumer, TransactionalLog
from tests.projections.conftest import T0, Story, event_store

SAYS = ("record too short", "bad magic bytes", "unknown schema fingerprint", "does not parse", "cannot be read",
        "bytes left over", "an event type gridloop no longer has")  # fmt: skip
"""What an UndecodableRecord's message opens with or holds: each names the part of the record that is wrong."""


@dataclass(frozen=True)
class Corpus:
    """Real records of every lifecycle path, as the relay writes them, and the store they came from."""

    records: tuple[bytes, ...]
    app: Gridloop


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    path = tmp_path_factory.mktemp("corpus") / "events.sqlite"
    clock = ManualClock(T0)
    app = event_store(path, clock)
    Story(app, clock).world().every_path().supervision_paths()
    notifications = app.recorder.select_notifications(1, 100_000)
    yield Corpus(tuple(codec.encode(app.mapper.to_domain_event(n)) for n in notifications), app)
    app.close()


def decoded_or_refused(data: bytes) -> Any:
    """The event, or None when refused as UndecodableRecord with a message that names what was wrong.

    Any other exception escapes and fails the test: that is the bug this file hunts.
    """
    try:
        event = codec.decode(data)
    except codec.UndecodableRecord as exc:
        assert any(words in str(exc) for words in SAYS), f"an unclear refusal: {exc}"
        return None
    assert isinstance(event, codec.Event)
    return event


def test_the_corpus_holds_events_of_every_aggregate_and_of_many_types(corpus: Corpus) -> None:
    """The mutations below start from real records of many types (not from one), so many schemas are exercised."""
    types = {codec.event_type(codec.decode(r)) for r in corpus.records}
    assert {folder for folder, _ in types} == set(codec.AGGREGATES.values())
    assert len(types) >= 25, sorted(types)


@given(data=st.binary(max_size=300))
@fuzz_settings()
def test_random_bytes_are_refused_as_undecodable(data: bytes) -> None:
    assert decoded_or_refused(data) is None


@given(pick=st.integers(0, 10_000), body=st.binary(max_size=300))
@fuzz_settings()
def test_a_known_header_before_a_random_body_is_an_event_of_that_type_or_refused(
    corpus: Corpus, pick: int, body: bytes
) -> None:
    record = corpus.records[pick % len(corpus.records)]
    event = decoded_or_refused(record[: codec.HEADER_SIZE] + body)
    if event is not None:
        assert codec.fingerprint_of(event) == record[2 : codec.HEADER_SIZE]


def test_every_truncation_of_every_record_is_refused(corpus: Corpus) -> None:
    """Exhaustive, not sampled: every proper prefix of every record in the corpus."""
    for record in corpus.records:
        for end in range(len(record)):
            assert decoded_or_refused(record[:end]) is None, f"{record[:end]!r} decoded"


@given(pick=st.integers(0, 10_000), flips=st.lists(st.integers(0, 10_000), min_size=1, max_size=4))
@fuzz_settings(scale=4)
def test_bit_flipped_records_decode_to_an_event_or_are_refused(corpus: Corpus, pick: int, flips: list[int]) -> None:
    """A flipped bit inside a string still reads (Avro carries no checksum; Kafka's CRC guards the bytes in
    transit); anything else is refused. Either way: an event or UndecodableRecord, nothing else."""
    record = bytearray(corpus.records[pick % len(corpus.records)])
    for flip in flips:
        record[flip // 8 % len(record)] ^= 1 << (flip % 8)
    decoded_or_refused(bytes(record))


def test_a_record_under_every_other_known_fingerprint_is_an_event_of_that_type_or_refused(corpus: Corpus) -> None:
    """Exhaustive: each record's body behind each schema fingerprint the registry knows (current and released)."""
    fingerprints = list(registry().by_fingerprint)
    for record in corpus.records:
        for fingerprint in fingerprints:
            event = decoded_or_refused(codec.MAGIC + fingerprint + record[codec.HEADER_SIZE :])
            if event is not None:
                writer = registry().by_fingerprint[fingerprint]
                assert codec.event_type(event) == (writer.aggregate, writer.event)


@given(pick=st.integers(0, 10_000), fingerprint=st.binary(min_size=8, max_size=8))
@fuzz_settings()
def test_an_unknown_fingerprint_is_refused_by_name(corpus: Corpus, pick: int, fingerprint: bytes) -> None:
    record = corpus.records[pick % len(corpus.records)]
    if fingerprint in registry().by_fingerprint:
        return
    with pytest.raises(codec.UndecodableRecord, match=f"unknown schema fingerprint {fingerprint.hex().upper()}"):
        codec.decode(codec.MAGIC + fingerprint + record[codec.HEADER_SIZE :])


def smallest_encoding(schema: Any, named: dict[str, Any]) -> int:
    """The fewest bytes a value of an Avro type can take (0 for null, and for records of nothing but nulls)."""
    if isinstance(schema, str):
        if schema in named:
            return smallest_encoding(named[schema], named)
        return {"null": 0, "boolean": 1, "int": 1, "long": 1, "float": 4, "double": 8, "bytes": 1, "string": 1}[schema]
    if isinstance(schema, list):
        return 1  # the branch index
    kind = schema["type"]
    if kind == "record":
        named[schema["name"]] = named[schema.get("namespace", "") + "." + schema["name"]] = schema
        return sum(smallest_encoding(f["type"], named) for f in schema["fields"])
    if kind in ("enum", "array", "map"):
        return 1
    if kind == "fixed":
        return int(schema["size"])
    return smallest_encoding(kind, named)


def repeated_items(schema: Any) -> Iterator[Any]:
    """The item type of every array and the value type of every map in a schema."""
    if isinstance(schema, list):
        for branch in schema:
            yield from repeated_items(branch)
    elif isinstance(schema, Mapping):
        if schema.get("type") == "array":
            yield schema["items"]
            yield from repeated_items(schema["items"])
        elif schema.get("type") == "map":
            yield {"type": "record", "name": "entry", "fields": [{"name": "k", "type": "string"},
                                                                 {"name": "v", "type": schema["values"]}]}  # fmt: skip
            yield from repeated_items(schema["values"])
        elif schema.get("type") == "record":
            for field in schema["fields"]:
                yield from repeated_items(field["type"])
        elif isinstance(schema.get("type"), (Mapping, list)):
            yield from repeated_items(schema["type"])


def test_no_schema_lets_a_block_count_spin_without_reading_bytes() -> None:
    """Why decode cannot hang: an array or map block says how many items follow, and if every item takes at least
    one byte, a huge count runs into the end of the record after at most len(record) items and is refused. A
    schema with an item that encodes to nothing (an array of null) would loop on a forged count: there is none."""
    schemas = [copy.deepcopy(dict(s.schema)) for s in registry().by_fingerprint.values()]
    assert schemas
    for schema in schemas:
        for item in repeated_items(schema):
            assert smallest_encoding(item, {}) >= 1, f"{schema['name']}: {item} can encode to no bytes"


def test_a_forged_huge_block_count_is_refused_not_spun_on(corpus: Corpus) -> None:
    """A map whose block count says 2**62 entries, in a real Dispatched record: refused once the bytes run out."""
    dispatched = next(r for r in corpus.records if codec.event_type(codec.decode(r)) == ("workorder", "Dispatched"))
    # One input, so the map's bytes are known: count 1 (zig-zag 02), key "k", value "v", end of blocks (00).
    event: Any = codec.decode(dispatched)
    single = codec.encode(dataclasses.replace(event, inputs={"k": "v"}))
    start = single.index(b"\x02\x02k\x02v\x00")
    with pytest.raises(codec.UndecodableRecord, match="does not parse"):
        codec.decode(single[:start] + _zigzag(2**62) + single[start + 1 :])


# -- the Kafka worker: poison in the log is dead-lettered once, the rest applied, no loop -------------------------

TOPICS = Topics("fz")


@pytest.fixture(scope="module")
def relayed(corpus: Corpus) -> TransactionalLog:
    """The corpus's store relayed into in-memory topics (the same records a real relay would send)."""
    log = TransactionalLog(TOPICS)
    Relay(corpus.app.recorder, corpus.app.mapper, log, log.read_tail, TOPICS, batch_size=1000).ship_all()
    return log


class Sink(list[tuple[bytes | None, bytes | None, dict[str, bytes]]]):
    def __call__(self, topic: str, key: bytes | None, value: bytes | None, headers: Any) -> None:
        self.append((key, value, dict(headers)))


garbage = st.one_of(
    st.binary(max_size=120),
    st.tuples(st.integers(0, 10_000), st.integers(1, 200)).map(lambda t: ("truncate", *t)),
    st.tuples(st.integers(0, 10_000), st.integers(0, 10_000)).map(lambda t: ("flip", *t)),
    st.tuples(st.integers(0, 10_000), st.binary(min_size=8, max_size=8)).map(lambda t: ("fingerprint", *t)),
)
"""Poison for one record's value: random bytes, or a real record truncated, bit-flipped or re-fingerprinted."""


def poison_value(spec: Any, real: list[bytes]) -> bytes:
    if isinstance(spec, bytes):
        return spec
    kind, pick, arg = spec
    record: bytes = real[pick % len(real)]
    if kind == "truncate":
        return record[: max(0, len(record) - int(arg))]
    if kind == "flip":
        flipped = bytearray(record)
        flipped[arg // 8 % len(flipped)] ^= 1 << (arg % 8)
        return bytes(flipped)
    return codec.MAGIC + bytes(arg) + record[codec.HEADER_SIZE :]


@given(
    poison=st.lists(
        st.tuples(garbage, st.integers(0, 10_000), st.booleans(), st.sampled_from(["position", "none", "bad"])),
        min_size=1,
        max_size=6,
    )
)
@fuzz_settings(scale=0.5)
def test_the_worker_dead_letters_each_poison_record_once_and_carries_on(
    relayed: TransactionalLog, poison: list[tuple[Any, int, bool, str]]
) -> None:
    log, inserted = poisoned(relayed, poison)
    workorder = TOPICS.of("workorder")
    # Where the poison landed, and the later records of each poisoned aggregate: held behind it, sent after it.
    bad: dict[tuple[int, bytes], int] = {}
    expected_poison, expected_held = set(), set()
    for partition in range(PARTITIONS):
        for offset, record in enumerate(log.committed[(workorder, partition)]):
            if (partition, record[0]) in bad:
                expected_held.add((partition, offset))  # poison too, but never tried: its aggregate is held
            elif any(record is p for p in inserted):
                expected_poison.add((partition, offset))
                bad[(partition, record[0])] = offset

    folder = Path(tempfile.mkdtemp(prefix="gridloop-fuzz-views-"))
    store, sink = ViewStore.open(folder / "views.sqlite"), Sink()
    # The worker logs every dead letter: hundreds of examples would flood the run.
    try:
        with capture_logs():
            worker = KafkaRunner(FakeConsumer(log), store, default_projections(), TOPICS, "g", sink, max_records=50)
            total = sum(len(records) for records in log.committed.values())
            for _ in range(total + 2):  # each poll reads at least one record or returns 0: a bound, not a clock
                if not worker.poll_once(0):
                    break
            else:
                raise AssertionError("the worker kept reading after the end of the log: a re-delivery loop")

            sent: dict[tuple[int, int], dict[str, bytes]] = {}
            for _, _, headers in sink:
                origin = (int(headers[DEAD_PARTITION]), int(headers[DEAD_OFFSET]))
                assert headers[DEAD_TOPIC] == workorder.encode()
                assert origin not in sent, f"{origin} was dead-lettered twice"
                sent[origin] = headers
            held = {origin for origin, headers in sent.items() if HELD_BEHIND in headers}
            assert set(sent) - held == expected_poison, "each poison record is dead-lettered, and nothing else is"
            assert held == expected_held, "the later records of a poisoned aggregate follow it, and no others"
            for origin in expected_poison:
                error = sent[origin][DEAD_ERROR].decode()
                assert "no valid position header" in error or any(words in error for words in SAYS), error
                assert sent[origin][DEAD_ATTEMPTS] == b"1", "bytes do not change between attempts: one is enough"

            # A second worker on the same view store from the start of the log: nothing applied or sent again.
            again = KafkaRunner(FakeConsumer(log), store, default_projections(), TOPICS, "g", sink)
            while again.poll_once(0):
                pass
            assert (again.applied, again.dead_lettered) == (0, 0)
    finally:
        store.close()
        shutil.rmtree(folder, ignore_errors=True)


def poisoned(
    relayed: TransactionalLog, poison: list[tuple[Any, int, bool, str]]
) -> tuple[TransactionalLog, list[tuple[bytes, bytes, dict[str, bytes]]]]:
    """A copy of the relayed log with each poison record put into the work-order topic; and those records."""
    log = TransactionalLog(TOPICS)
    log.committed = copy.deepcopy(relayed.committed)
    workorder = TOPICS.of("workorder")
    real = [v for records in log.committed.values() for _, v, _ in records]
    rng = random.Random(len(poison))
    inserted = []
    for spec, where, own_key, header in poison:
        value = poison_value(spec, real)
        if header == "position" and decoded_or_refused(value) is not None:
            continue  # a flipped bit in a string: a valid event, not poison
        partition = where % PARTITIONS
        records = log.committed[(workorder, partition)]
        at = where // PARTITIONS % (len(records) + 1)
        # An aggregate of its own, or the key of a case earlier in this partition (its later events are then held).
        key = records[at - 1][0] if at and not own_key else str(rng.getrandbits(64)).encode()
        headers = {"event_type": b"workorder.Accepted"}
        if header != "none":
            headers[POSITION] = b"12" if header == "position" else b"-1x"
        record = (key, value, headers)
        records.insert(at, record)
        inserted.append(record)
    return log, inserted


def _zigzag(n: int) -> bytes:
    """Avro's long encoding of a non-negative n."""
    n <<= 1
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)
