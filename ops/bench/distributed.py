"""Projection workers on PostgreSQL views, 1 → 2 → 3 processes in one consumer group, against a raw consumer.

``python -m ops.bench.distributed [--quick]``. Each run: a fresh consumer group and a fresh views schema; the
workers (processes of their own, each a KafkaRunner on a PostgresViewStore, as `gridloop project --follow` runs
it) join while their topics are empty, stop polling once the group has shared the partitions out, the same
pre-relayed records are written to the topics, and the clock runs from "go" until every worker has read its
partitions to their ends. Over the same window the CPU time of the workers, of PostgreSQL and of the broker's
JVM is read from /proc, and pg_stat_activity is sampled for backends waiting on a lock: what bounds the scaling
(cores, or rows the workers all write) is measured, not guessed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from engine.kafka import read_committed_consumer
from engine.relay import Relay
from ops.bench import sample_events
from ops.bench.kafka import (
    CATCH_UP_TIMEOUT,
    DEFAULTS,
    JOIN_TIMEOUT,
    POLL_RECORDS,
    TEMPLATE,
    BenchFailed,
    Outgoing,
    _followed,
    _join,
    _KafkaBench,
    _nothing_committed,
    _Recording,
    bench_broker,
    decode_to_ends,
)
from ops.bench.postgres import bench_postgres
from ops.kafka_broker import Broker
from ops.postgres import Server

WORKERS = (1, 2, 3)
SESSION_TIMEOUT_MS = 10_000
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    """Cores busy over a timed window (CPU seconds / wall seconds), by party, and the machine's busy share."""

    workers: float
    postgres: float
    broker: float
    machine: float
    """Busy share of all the machine's cores (1.0: every core busy the whole window), from /proc/stat."""
    lock_waits: float = 0.0
    """PostgreSQL backends waiting on a lock (a row another transaction holds), on average over the window."""
    waited_on: str = ""
    """The statement most often seen waiting on a lock (its start), if any was."""


@dataclass(frozen=True)
class Row:
    """One configuration: records per second (median of the repeats) and where the CPU went (that run's)."""

    name: str
    records: int
    per_s: float
    samples: tuple[float, ...]
    usage: Usage


# -- CPU accounting from /proc -------------------------------------------------------------------------


def _cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used; 0 for one that is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return 0


def _listener(port: int) -> int | None:
    """The process listening on TCP ``port`` on this machine (None if none is, or it is elsewhere)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(str(fd.readlink()) in inodes for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
    return None


def _family(root: int | None) -> list[int]:
    """A process and its children (PostgreSQL: the postmaster, its backends and its helpers)."""
    if root is None:
        return []
    children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _parent(int(p.name)) == root]
    return [root, *children]


def _machine() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / TICKS, sum(values[:8]) / TICKS


class _Meter:
    """CPU time of the workers, the PostgreSQL server and the broker over one window."""

    def __init__(self, workers: Sequence[int], postgres: int | None, broker: int | None) -> None:
        self._parties = {"workers": list(workers), "broker": [broker] if broker else []}
        self._postgres = postgres
        self._started = time.monotonic()
        self._before = self._sample()
        self._machine = _machine()

    def _sample(self) -> dict[str, dict[int, float]]:
        parties = {**self._parties, "postgres": _family(self._postgres)}
        return {party: {pid: _cpu(pid) for pid in pids} for party, pids in parties.items()}

    def stop(self, seconds: float | None = None) -> Usage:
        after = self._sample()
        wall = seconds if seconds is not None else time.monotonic() - self._started
        busy = {
            party: sum(cpu - self._before[party].get(pid, 0.0) for pid, cpu in found.items())
            for party, found in after.items()
        }
        machine_busy, machine_total = (b - a for b, a in zip(_machine(), self._machine, strict=True))
        return Usage(
            workers=busy["workers"] / wall,
            postgres=busy["postgres"] / wall,
            broker=busy["broker"] / wall,
            machine=min(1.0, machine_busy / machine_total) if machine_total else 0.0,
        )


class _LockWaits:
    """Samples pg_stat_activity every few milliseconds: how many backends wait on a lock, and on what statement."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._stop = threading.Event()
        self._samples: list[int] = []
        self._statements: Counter[str] = Counter()
        self._thread = threading.Thread(target=self._run, name="lock-waits", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self._server.dsn, autocommit=True) as connection:
            while not self._stop.wait(0.02):
                waiting = connection.execute(
                    "SELECT left(query, 90) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
                    "AND wait_event_type = 'Lock'",
                    (self._server.dbname,),
                ).fetchall()
                self._samples.append(len(waiting))
                self._statements.update(row[0] for row in waiting)

    def stop(self) -> tuple[float, str]:
        self._stop.set()
        self._thread.join(timeout=10)
        mean = statistics.fmean(self._samples) if self._samples else 0.0
        return mean, self._statements.most_common(1)[0][0] if self._statements else ""


# -- the worker processes -----------------------------------------------------------------------------


def _worker(connection: Connection, bootstrap: str, prefix: str, group: str, server: Server, schema: str) -> None:
    """One projection worker: joins the group, reports its partitions, holds on "hold", catches up on "go"."""
    from engine.kafka import Topics
    from ops.logs import configure_logging
    from projections.kafka_runner import TRANSIENT, KafkaRunner
    from projections.store_postgres import PostgresViewStore
    from projections.views import default_projections

    configure_logging("warning")  # stderr carries the parent's table's warnings only
    consumer = read_committed_consumer(
        bootstrap,
        group_id=group,
        max_poll_records=DEFAULTS.projection_batch_size,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=SESSION_TIMEOUT_MS // 4,
    )
    store = PostgresViewStore.connect(
        host=server.host,
        port=server.port,
        user=server.user,
        password=server.password,
        dbname=server.dbname,
        schema=schema,
    )
    try:
        runner = KafkaRunner(
            consumer, store, default_projections(), Topics(prefix), group, _no_dead_letters, max_records=POLL_RECORDS
        )
        told = ""
        while told != "hold":  # take part in the group's rebalances until the parent sees them settled
            runner.poll_once(0.1)
            connection.send(sorted(f"{tp.topic}:{tp.partition}" for tp in runner.assigned))
            if connection.poll(0):
                told = connection.recv()
        connection.send(sorted(f"{tp.topic}:{tp.partition}" for tp in runner.assigned))
        connection.recv()  # go
        while True:
            try:
                runner.catch_up(CATCH_UP_TIMEOUT)
                break
            except TRANSIENT:  # the batch was put back: read it again at once, as a tuned `--follow` would
                continue
        connection.send((time.monotonic(), runner.applied, runner.dead_lettered))
        connection.recv()  # stop
    finally:
        consumer.close()
        store.close()


def _no_dead_letters(topic: str, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> None:
    raise BenchFailed(f"a bench record was dead-lettered to {topic}: {dict(headers).get('dlq_error', b'')!r}")


@contextmanager
def _workers(count: int, *args: Any) -> Iterator[list[tuple[multiprocessing.process.BaseProcess, Connection]]]:
    context = multiprocessing.get_context("spawn")
    started: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
    try:
        for _ in range(count):
            ours, theirs = context.Pipe()
            process: multiprocessing.process.BaseProcess = context.Process(
                target=_worker, args=(theirs, *args), daemon=True
            )
            process.start()
            theirs.close()
            started.append((process, ours))
        yield started
    finally:
        for process, connection in started:
            with suppress(OSError):
                connection.send("stop")
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


def _settled(connections: Sequence[Connection], every: set[str]) -> list[list[str]]:
    """Wait until the workers' latest assignments are non-empty, disjoint and cover ``every`` partition."""
    latest: list[list[str]] = [[] for _ in connections]
    deadline = time.monotonic() + JOIN_TIMEOUT
    while True:
        for i, connection in enumerate(connections):
            while connection.poll(0):
                latest[i] = connection.recv()
        flat = [p for held in latest for p in held]
        if all(latest) and len(flat) == len(set(flat)) and set(flat) == every:
            return latest
        if time.monotonic() > deadline:
            raise BenchFailed(f"the group did not share {len(every)} partitions among {len(connections)}: {latest}")
        time.sleep(0.05)


# -- the runs -------------------------------------------------------------------------------------------


class _Bench:
    """The runs on one broker and one PostgreSQL server; the pre-relayed records each run writes anew."""

    def __init__(self, broker: Broker, server: Server, records: Sequence[Outgoing]) -> None:
        self.kafka = _KafkaBench(broker)
        self.server = server
        self.records = records
        followed = set(_followed(TEMPLATE))
        self.expected = sum(1 for record in records if record[0] in followed)
        port = int(broker.bootstrap.split(",")[0].rsplit(":", 1)[1])
        self.broker_pid = broker.pid or _listener(port)
        self.postgres_pid = _listener(server.port) if server.host in ("127.0.0.1", "localhost") else None

    def workers_once(self, count: int) -> tuple[float, Usage]:
        """Seconds ``count`` workers take to fold the records into a fresh views schema; and the CPU they all used."""
        topics = self.kafka.fresh_topics()
        every = {f"{t}:{p}" for t in _followed(topics) for p in range(DEFAULTS.kafka_partitions)}
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        self._create_schema(schema)
        try:
            args = (self.kafka.broker.bootstrap, topics.prefix, f"{topics.prefix}-views", self.server, schema)
            with _workers(count, *args) as started:
                connections = [c for _, c in started]
                _settled(connections, every)
                for connection in connections:
                    connection.send("hold")
                held = [_last(connection) for connection in connections]
                if sorted(p for h in held for p in h) != sorted(every):
                    raise BenchFailed(f"the group moved partitions while held: {held}")
                self.kafka.fill(topics, self.records)
                meter = _Meter([p.pid for p, _ in started if p.pid], self.postgres_pid, self.broker_pid)
                waits = _LockWaits(self.server)
                go = time.monotonic()
                for connection in connections:
                    connection.send("go")
                try:
                    done = [connection.recv() for connection in connections]
                except EOFError:
                    raise BenchFailed("a worker exited before it caught up (its traceback is above)") from None
                seconds = max(finished for finished, *_ in done) - go
                lock_waits, waited_on = waits.stop()
                usage = replace(meter.stop(seconds), lock_waits=lock_waits, waited_on=waited_on)
            applied = sum(d[1] for d in done)
            if applied != self.expected or any(d[2] for d in done):
                raise BenchFailed(f"{count} workers applied {applied} of {self.expected} records")
            return seconds, usage
        finally:
            self._drop_schema(schema)

    def raw_once(self) -> tuple[float, Usage]:
        """Seconds one raw read_committed consumer takes to read and decode the same records (no views, no group
        rebalance in the window: it joins while the topics are empty, as the workers do)."""
        topics = self.kafka.fresh_topics()
        consumer = read_committed_consumer(
            self.kafka.broker.bootstrap,
            group_id=f"{topics.prefix}-raw",
            max_poll_records=DEFAULTS.projection_batch_size,
        )
        try:
            consumer.subscribe(_followed(topics))
            consumer.topics()  # metadata before the first join, as KafkaRunner does (a join without it can stall)
            _join(lambda: bool(consumer.assignment()), lambda: consumer.poll(timeout_ms=100))
            self.kafka.fill(topics, self.records)
            meter = _Meter([os.getpid()], self.postgres_pid, self.broker_pid)
            started = time.monotonic()
            read = decode_to_ends(consumer)
            seconds = time.monotonic() - started
            usage = meter.stop(seconds)
        finally:
            consumer.close()
        if read != self.expected:
            raise BenchFailed(f"the raw consumer read {read} of {self.expected} records")
        return seconds, usage

    def _create_schema(self, schema: str) -> None:
        """The schema and the views' tables, made once here so that the workers do not race to create them."""
        import psycopg

        from projections.store_postgres import PostgresViewStore

        with psycopg.connect(self.server.dsn, autocommit=True) as connection:
            connection.execute(f"CREATE SCHEMA {schema}")
        s = self.server
        PostgresViewStore.connect(
            host=s.host, port=s.port, user=s.user, password=s.password, dbname=s.dbname, schema=schema
        ).close()

    def _drop_schema(self, schema: str) -> None:
        import psycopg

        with psycopg.connect(self.server.dsn, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    def close(self) -> None:
        self.kafka.close()


def _last(connection: Connection) -> list[str]:
    """The last assignment a held worker reports (it sends one more after "hold")."""
    latest: list[str] = connection.recv()
    while connection.poll(0.2):
        latest = connection.recv()
    return latest


def workers_scaling(broker: Broker, server: Server, n: int, repeats: int, counts: Sequence[int] = WORKERS) -> list[Row]:
    """1 → 2 → 3 workers (``counts``) and the raw consumer on the same records (a log of about ``n`` positions)."""
    with tempfile.TemporaryDirectory() as tmp:
        app, _ = sample_events(n, Path(tmp))
        try:
            recording = _Recording()
            Relay(
                app.recorder, app.mapper, recording, _nothing_committed, TEMPLATE, DEFAULTS.relay_batch_size
            ).ship_all()
        finally:
            app.close()
    bench = _Bench(broker, server, recording.sent)
    try:
        runs: dict[str, list[tuple[float, Usage]]] = {"raw": [], **{str(k): [] for k in counts}}
        for _ in range(repeats):  # interleaved, so that the broker's and the server's drift falls on every side
            runs["raw"].append(bench.raw_once())
            for count in counts:
                runs[str(count)].append(bench.workers_once(count))
        rows = [
            _row(f"{k} worker{'s' if k > 1 else ''} (PostgreSQL views)", bench.expected, runs[str(k)]) for k in counts
        ]
        return [*rows, _row("raw consumer + decode, no views (1 process)", bench.expected, runs["raw"])]
    finally:
        bench.close()


def _row(name: str, records: int, runs: Sequence[tuple[float, Usage]]) -> Row:
    ordered = sorted(runs, key=lambda run: run[0])
    median = ordered[len(ordered) // 2]
    return Row(
        name, records, records / statistics.median(s for s, _ in runs), tuple(records / s for s, _ in runs), median[1]
    )


def markdown(rows: Sequence[Row], n: int, repeats: int) -> str:
    cores = os.cpu_count() or 0
    lines = [
        f"Machine: {platform.python_implementation()} {platform.python_version()} on {platform.machine()}, "
        f"{platform.system()}, {cores} cores; log of {n} positions, median of {repeats} run(s)",
        "",
        "| path | records | records/s | vs 1 worker | runs (records/s) | workers' cores | PostgreSQL's | broker's"
        " | machine busy | backends waiting on a lock |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    one = rows[0].per_s
    notes = []
    for row in rows:
        u = row.usage
        cpu = f"{u.workers:.2f} | {u.postgres:.2f} | {u.broker:.2f} | {u.machine:.0%} | {u.lock_waits:.2f}"
        runs = ", ".join(f"{s:,.0f}" for s in row.samples)
        lines.append(f"| {row.name} | {row.records} | {row.per_s:,.0f} | {row.per_s / one:.2f} | {runs} | {cpu} |")
        if u.waited_on:
            notes.append(f"- {row.name}: most often waiting on a lock: `{' '.join(u.waited_on.split())}`")
    return "\n".join([*lines, "", *notes] if notes else lines)


def main() -> None:
    from ops.logs import configure_logging

    parser = argparse.ArgumentParser(prog="python -m ops.bench.distributed")
    parser.add_argument("--quick", action="store_true", help="A smaller log and one run of each.")
    parser.add_argument("--events", type=int, default=None, help="Log positions (about half reach the views).")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    configure_logging("warning")
    n = args.events or (1200 if args.quick else 6000)
    repeats = args.repeats or (1 if args.quick else 3)
    with bench_broker() as broker, bench_postgres() as server:
        print(markdown(workers_scaling(broker, server, n, repeats), n, repeats))


if __name__ == "__main__":
    main()
