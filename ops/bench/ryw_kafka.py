"""Read-your-writes through Kafka: a report executed on a kafka-mode store until its row is on the board.

The path a kafka-mode deployment runs: the command stored in SQLite, ``gridloop relay --follow`` shipping
it to Kafka in a transaction, a ``gridloop project --follow`` worker folding it into the views. Both are
real processes; this one executes reports at a steady pace (about 1k log positions a second: a report
stores its event and its command receipt) and stamps when each case's row appears. The baseline is the
floor Kafka itself sets: one record sent by a raw kafka-python producer and flushed, at the same pace,
until a read_committed consumer receives it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from kafka import KafkaProducer

from engine import commands as c
from engine.application import Gridloop
from engine.kafka import client_config, read_committed_consumer
from ops.bench import Latency, Measurement
from ops.bench.kafka import BenchFailed
from ops.config import load_settings
from ops.kafka_broker import Broker, create_topics
from ops.sample import set_up_district

RATE = 1000
"""Log positions per second the reports are paced at (two per report)."""

VISIBLE_TIMEOUT = 60.0
"""How long a case may take to reach the board before the bench gives up (a stuck worker, not a slow one)."""


def _children_env(data_dir: Path, bootstrap: str, prefix: str) -> dict[str, str]:
    values = {
        "MODE": "kafka",
        "KAFKA_PROVISIONER": "external",
        "KAFKA_BOOTSTRAP": bootstrap,
        "KAFKA_TOPIC_PREFIX": prefix,
        "KAFKA_GROUP": f"{prefix}-views",
        "RELAY_TRANSACTIONAL_ID": f"{prefix}-relay",
        "LOG_LEVEL": "warning",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDLOOP_")}
    env.update({f"GRIDLOOP_{k}": v for k, v in values.items()})
    return env


@contextmanager
def _followers(data_dir: Path, env: dict[str, str]) -> Iterator[None]:
    """``relay --follow`` and ``project --follow`` for the time of the block; stopped (SIGTERM, then SIGKILL)."""
    gridloop = shutil.which("gridloop", path=str(Path(sys.executable).parent))
    if gridloop is None:
        raise BenchFailed("the gridloop console script is not installed beside this Python")
    started = []
    try:
        for command in (["relay", "--follow"], ["project", "--follow"]):
            with (data_dir / f"{command[0]}.log").open("w") as log:
                started.append(
                    subprocess.Popen(
                        [gridloop, "--data-dir", str(data_dir), *command],
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=log,
                        env=env,
                    )
                )
        yield
    finally:
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class _Board:
    """Stamps the moment each awaited case's row is first seen on the kafka-mode board (polled every 2 ms)."""

    def __init__(self, views: Path) -> None:
        self.views = views
        self.awaited: dict[str, float] = {}
        self.seen: dict[str, float] = {}
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def await_case(self, case_id: str, submitted: float) -> None:
        with self.lock:
            self.awaited[case_id] = submitted

    def _poll(self) -> None:
        db: sqlite3.Connection | None = None
        while not self.done.is_set():
            with self.lock:
                pending = [k for k in self.awaited if k not in self.seen]
            if pending and db is None and self.views.exists():
                db = sqlite3.connect(f"file:{self.views}?mode=ro", uri=True, check_same_thread=False)
            if pending and db is not None:
                with suppress(sqlite3.OperationalError):  # the board's table is not made yet
                    marks = ",".join("?" * len(pending[:500]))
                    rows = db.execute(f"SELECT case_id FROM board WHERE case_id IN ({marks})", pending[:500])  # noqa: S608
                    now = time.perf_counter()
                    with self.lock:
                        for (case_id,) in rows:
                            self.seen.setdefault(case_id, now)
            time.sleep(0.002)
        if db is not None:
            db.close()

    def wait_all(self) -> None:
        deadline = time.monotonic() + VISIBLE_TIMEOUT
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.seen) >= len(self.awaited):
                    return
            time.sleep(0.01)
        raise BenchFailed(f"{len(self.awaited) - len(self.seen)} cases not on the board within {VISIBLE_TIMEOUT} s")

    def latencies_ms(self, skip: set[str]) -> list[float]:
        self.done.set()
        self.thread.join()
        return [(self.seen[k] - t) * 1000 for k, t in self.awaited.items() if k not in skip]


def _paced(count: int, per_s: float, step: Callable[[int], None]) -> float:
    """Run ``step`` COUNT times at ``per_s`` a second (never bunching up after a slow step); the rate reached."""
    started = time.perf_counter()
    for i in range(count):
        delay = started + i / per_s - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        step(i)
    return count / (time.perf_counter() - started)


def _gridloop_side(broker: Broker, data_dir: Path, reports: int) -> tuple[float, list[float], str]:
    prefix = f"bench-ryw-{uuid.uuid4().hex[:12]}"
    settings = load_settings(
        {}, data_dir=data_dir, mode="kafka", kafka_provisioner="external", kafka_bootstrap=broker.bootstrap
    )
    app = Gridloop({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(settings.event_store_path)})
    grid = set_up_district(app, "ryw", "r")
    board = _Board(settings.view_store_path)

    def report(i: int) -> None:
        command = c.ReportCase(
            command_id=f"ryw{i}",
            actor="bench",
            source="resident",
            category="C0101",
            grid=grid,
            description="井盖缺失",
            lon=116.4,
            lat=39.9,
        )
        submitted = time.perf_counter()
        board.await_case(str(app.execute(command).aggregate_id), submitted)

    try:
        with _followers(data_dir, _children_env(data_dir, broker.bootstrap, prefix)):
            report(-1)  # the first case waits for both processes to start and join: not a sample
            board.wait_all()
            warm_up = set(board.awaited)
            rate = _paced(reports, RATE / 2, report)
            board.wait_all()
            return rate, board.latencies_ms(warm_up), prefix
    finally:
        board.done.set()
        app.close()


def _raw_side(broker: Broker, prefix: str, records: int) -> tuple[float, list[float]]:
    topic = f"{prefix}-raw"
    create_topics(broker, [topic], 1, 1)
    sent: dict[int, float] = {}
    received: dict[int, float] = {}
    consumer = read_committed_consumer(broker.bootstrap, group_id=None)
    consumer.subscribe([topic])
    stop = threading.Event()

    def consume() -> None:
        while not stop.is_set():
            for batch in consumer.poll(timeout_ms=50).values():
                now = time.perf_counter()
                for record in batch:
                    received.setdefault(int(record.key), now)

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    producer = KafkaProducer(**client_config(broker.bootstrap, acks="all", enable_idempotence=True, linger_ms=0))
    payload = b"x" * 200

    def send(i: int) -> None:
        sent[i] = time.perf_counter()
        producer.send(topic, key=str(i).encode(), value=payload)
        producer.flush()

    try:
        send(-1)  # the consumer's first fetch (joining, the partition's start): not a sample
        deadline = time.monotonic() + VISIBLE_TIMEOUT
        while -1 not in received and time.monotonic() < deadline:
            time.sleep(0.01)
        rate = _paced(records, RATE / 2, send)
        while len(received) < len(sent) and time.monotonic() < deadline + VISIBLE_TIMEOUT:
            time.sleep(0.01)
    finally:
        stop.set()
        reader.join()
        producer.close()
        consumer.close()
    if len(received) < len(sent):
        raise BenchFailed(f"the raw consumer received {len(received)} of {len(sent)} records")
    return rate, [(received[i] - sent[i]) * 1000 for i in range(records)]


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def read_your_writes_kafka(broker: Broker, seconds: float) -> Measurement:
    """``seconds`` of reports paced at RATE log positions/s; each one's time from execute to its board row."""
    reports = max(10, int(seconds * RATE / 2))
    with tempfile.TemporaryDirectory(prefix="gridloop-bench-ryw-") as tmp:
        rate, ours, prefix = _gridloop_side(broker, Path(tmp), reports)
    raw_rate, theirs = _raw_side(broker, prefix, reports)
    p50, p99 = _percentiles(ours)
    raw50, raw99 = _percentiles(theirs)
    return Measurement(
        "read-your-writes through Kafka (report → board row)",
        reports,
        rate,
        raw_rate,
        "kafka-python: one record sent + flushed (acks=all) until a read_committed consumer has it, same pace",
        latency=Latency(reports, p50, p99, raw50, raw99),
        notes=(
            f"read-your-writes through Kafka: {reports} reports paced at {RATE / 2:.0f}/s ({RATE} log positions/s "
            f"asked, {rate * 2:,.0f}/s reached) with `gridloop relay --follow` and one `gridloop project --follow` "
            "worker running; latency from execute to the case's row on the kafka-mode board",
        ),
    )
