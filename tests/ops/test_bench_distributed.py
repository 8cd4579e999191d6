"""The projection-worker bench still runs on a real broker and PostgreSQL (tiny sizes; speed is never asserted)."""

from __future__ import annotations

from ops.bench.distributed import markdown, workers_scaling
from ops.bench.kafka import bench_broker
from ops.kafka_broker import BrokerUnavailable
from ops.postgres import Server
from tests.conftest import unavailable

COUNTS = (1, 2)
"""One worker and a group of two: three run the same code, and each group's joins cost seconds here."""


def test_one_and_two_workers_and_the_raw_consumer_fold_the_same_records_and_their_cpu_is_accounted(
    postgres: Server,
) -> None:
    try:
        with bench_broker() as broker:
            rows = workers_scaling(broker, postgres, 120, 1, counts=COUNTS)
    except BrokerUnavailable as exc:
        unavailable(f"no Kafka broker for the bench: {exc}")

    assert len(rows) == len(COUNTS) + 1
    assert len({row.records for row in rows}) == 1 and rows[0].records > 0, "every run read the same records"
    assert all(row.per_s > 0 for row in rows)
    # The workers' runs last long enough for /proc's clock ticks (the raw consumer's, at this size, may not):
    # the workers' CPU is read, and PostgreSQL's processes were found and worked while they wrote the views.
    for row in rows[: len(COUNTS)]:
        assert row.usage.workers > 0 and row.usage.postgres > 0, row
        assert 0 < row.usage.machine <= 1, row
    table = markdown(rows, 120, 1)
    assert table.count("\n| ") == len(rows) + 1  # header + one row each
