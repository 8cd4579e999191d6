"""Hypothesis-made garbage on a real broker, with the headers the relay sets: each record reaches the decoder, is
dead-lettered once with the decoder's error, and the worker carries on (tests/fuzz has the same on fakes)."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka import KafkaProducer

from engine import codec
from engine.clock import ManualClock
from engine.kafka import client_config
from ops.kafka_broker import Broker
from ops.runtime import ensure_topics, open_kafka_runner, open_relay, open_runtime
from ops.sample import set_up_district
from schemas.registry import registry
from tests.integration.kafka_helpers import Deployment, assert_views_match_the_embedded_fold, open_store, read_topics

POISON = 12


def undecodable(data: bytes) -> bool:
    try:
        codec.decode(data)
    except codec.UndecodableRecord:
        return True
    return False


garbage = st.one_of(
    st.binary(max_size=200),
    # A known schema's header before a random body: the decoder gets as far as the body.
    st.tuples(st.sampled_from(sorted(registry().by_fingerprint)), st.binary(max_size=200)).map(
        lambda t: codec.MAGIC + t[0] + t[1]
    ),
).filter(undecodable)


@given(values=st.lists(garbage, min_size=POISON, max_size=POISON), seed=st.integers(0, 2**32))
@settings(max_examples=1, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
def test_random_records_with_valid_headers_are_each_dead_lettered_once_and_the_views_stay_exact(
    tmp_path_factory: pytest.TempPathFactory, kafka_broker: Broker, values: list[bytes], seed: int
) -> None:
    tmp = tmp_path_factory.mktemp("garbage")
    deployment = Deployment.of(tmp, kafka_broker.bootstrap)
    clock = ManualClock(datetime(2026, 11, 23, 1, 0, tzinfo=UTC))
    app = open_store(deployment.events, clock)
    try:
        set_up_district(app)
        settings_ = deployment.settings()
        ensure_topics(settings_)
        relay, close_relay = open_relay(settings_, app)
        relay.ship_all()
        close_relay()
    finally:
        app.close()

    workorder = deployment.topics.of("workorder")
    producer = KafkaProducer(**client_config(deployment.bootstrap, acks="all"))
    sent: dict[str, bytes] = {}
    for n, value in enumerate(values):
        key = str(UUID(int=(seed + n) % 2**128, version=4)).encode()  # an aggregate of its own: nothing held behind
        headers = [("event_type", b"workorder.Accepted"), ("position", str(n + 1).encode())]
        meta = producer.send(workorder, key=key, value=value, headers=headers).get(timeout=60)
        sent[f"{workorder}[{meta.partition}]@{meta.offset}"] = value
    producer.close()

    rt = open_runtime(settings_, clock)
    try:
        runner = open_kafka_runner(settings_, rt)
        runner.catch_up()
        first = runner.dead_lettered
    finally:
        rt.close()

    letters = read_topics(deployment.bootstrap, [deployment.dead_letters])
    by_origin = {f"{d.header('dlq_topic')}[{d.header('dlq_partition')}]@{d.header('dlq_offset')}": d for d in letters}
    assert len(by_origin) == len(letters) == first == POISON, "each garbage record dead-lettered exactly once"
    for origin, value in sent.items():
        letter = by_origin[origin]
        assert letter.value == value
        assert letter.header("dlq_attempts") == "1"
        error = letter.header("dlq_error")
        assert error.startswith(f"PoisonRecord: {origin}: "), error  # the decoder's own words follow
    assert_views_match_the_embedded_fold(deployment, tmp)

    rt = open_runtime(settings_, clock)
    try:
        again = open_kafka_runner(settings_, rt)
        again.catch_up()
        assert (again.applied, again.dead_lettered) == (0, 0), "nothing is delivered again after a restart"
    finally:
        rt.close()
