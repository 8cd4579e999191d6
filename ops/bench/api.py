"""API benchmarks: board reads and read-your-writes over HTTP, against a bare Starlette app and the in-process path."""

from __future__ import annotations

import contextlib
import shutil
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from engine import commands as c
from engine.clock import ManualClock
from ops.bench import Latency, Measurement
from ops.bench.http import (
    BenchFailed,
    Connection,
    Served,
    answer,
    request,
    serve_bare,
    serve_gridloop,
    settings_for,
    spawned,
)
from ops.logs import configure_logging
from ops.presets import load_preset
from ops.runtime import Runtime, open_runtime
from ops.sample import set_up_district
from ops.simulator import simulate
from projections import queries
from projections.api.access import Principal, Role, add_token

LOCAL = ZoneInfo("Asia/Shanghai")
PRESET, DAY, SEED = "yuanqu", date(2026, 11, 9), 23
"""The bench's own simulated day of Yuanqu (垣曲县), a Monday; served the next morning at 09:00."""
DISTRICT = "140827"
CLIENTS = (1, 4)
"""Concurrent keep-alive clients reading the board (each a thread with a connection of its own), one row for each:
one alone shows a read's latency without queueing, four keep the server's one event loop busy."""
PAGE = 50


@dataclass(frozen=True)
class District:
    """A data dir holding a district's event store and caught-up views, and the moment it is served at."""

    data_dir: Path
    served_at: datetime


def simulated_district(data_dir: Path, days: int = 1) -> District:
    """The preset's district after ``days`` simulated days (the bench's seed), views caught up."""
    clock = ManualClock(datetime.combine(DAY, datetime.min.time(), LOCAL).astimezone(UTC))
    rt = open_runtime(settings_for(data_dir), clock)
    try:
        simulate(rt.app, clock, load_preset(PRESET), days=days, start=DAY, seed=SEED)
        rt.catch_up()
    finally:
        rt.close()
    next_morning = datetime.combine(DAY + timedelta(days=days), datetime.min.time(), LOCAL) + timedelta(hours=9)
    return District(data_dir, next_morning)


def sample_district(data_dir: Path, cases: int) -> District:
    """A tiny district (ops.sample: one grid) with ``cases`` cases reported and registered: for smoke tests."""
    served_at = datetime(2026, 11, 3, 9, 0, tzinfo=LOCAL)
    rt = open_runtime(settings_for(data_dir), ManualClock(served_at.astimezone(UTC)))
    try:
        grid = set_up_district(rt.app, "bench", "bench")
        for i in range(cases):
            case_id = rt.app.execute(_report(f"sample-{i}", grid, "C0101", "bench")).aggregate_id
            rt.app.execute(c.RegisterCase(command_id=f"sample-{i}-r", actor="bench", case_id=case_id))
        rt.catch_up()
    finally:
        rt.close()
    return District(data_dir, served_at)


def _report(command_id: str, grid: str, category: str, actor: str) -> c.ReportCase:
    return c.ReportCase(
        command_id=command_id, actor=actor, source="hotline", category=category, grid=grid, description="井盖缺失"
    )


@dataclass
class _Round:
    seconds: float
    latencies: list[float]
    client_cpu: float
    server_cpu: float


def _read_round(server: Served, requests: Sequence[bytes], reads: int, clients: int) -> _Round:
    """``reads`` requests (the mix, in turn) from ``clients`` threads at once, each on its own open connection."""
    ready = threading.Barrier(clients + 1)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    cpu = [0.0] * clients
    failures: list[Exception] = []

    def client(i: int) -> None:
        connection = None
        try:
            connection = Connection(server.port)
            mine = [requests[k % len(requests)] for k in range(i, reads, clients)]
            ready.wait()
            started = time.thread_time()
            for raw in mine:
                sent = time.perf_counter()
                status, body = connection.exchange(raw)
                latencies[i].append(time.perf_counter() - sent)
                if status != 200:
                    raise BenchFailed(f"a board read answered {status}: {body[:300]!r}")
            cpu[i] = time.thread_time() - started
        except Exception as exc:
            failures.append(exc)
            ready.abort()
        finally:
            if connection is not None:
                connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a client that failed says why, below
        ready.wait()
    server_before, started = server.cpu_seconds(), time.perf_counter()
    for thread in threads:
        thread.join()
    seconds, server_cpu = time.perf_counter() - started, server.cpu_seconds() - server_before
    if failures:
        raise failures[0]
    return _Round(seconds, [x for own in latencies for x in own], sum(cpu), server_cpu)


def _latency_ms(samples: Sequence[float]) -> tuple[float, float]:
    """The median and the 99th percentile, in milliseconds."""
    ordered = sorted(samples)
    return 1000 * statistics.median(ordered), 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


# -- board reads ---------------------------------------------------------------------------------


def cases_of(district: District) -> list[queries.CaseRow]:
    """Every case of the district as its board holds them."""
    rt = open_runtime(settings_for(district.data_dir), ManualClock(district.served_at.astimezone(UTC)))
    try:
        rows = queries.board(rt.views, now=district.served_at, limit=1_000_000)
    finally:
        rt.close()
    if not rows:
        raise BenchFailed(f"the district in {district.data_dir} has no cases")
    return rows


def _most_common(values: Iterable[str]) -> str:
    return Counter(values).most_common(1)[0][0]


def board_mix(district: District) -> list[str]:
    """Query strings of GET /v1/board: all cases, one status, the overdue ones, the busiest grid; a page each."""
    rows = cases_of(district)
    status, grid = _most_common(row.status.value for row in rows), _most_common(row.grid for row in rows)
    return [f"limit={PAGE}", f"status={status}&limit={PAGE}", f"overdue=true&limit={PAGE}", f"grid={grid}&limit={PAGE}"]


def board_reads(district: District, reads: int, repeats: int, clients: int, profile: bool = True) -> Measurement:
    """GET /v1/board as a district's dispatcher (a mix of filters) vs the same SQL from a bare Starlette app."""
    mix = board_mix(district)
    with tempfile.TemporaryDirectory(prefix="gridloop-bench-api-") as tmp:
        data_dir = Path(tmp) / "served"
        shutil.copytree(district.data_dir, data_dir)
        settings = settings_for(data_dir)
        token = add_token(settings.token_file, Principal("bench", Role.DISPATCHER, DISTRICT, f"desk:{DISTRICT}"))
        at = district.served_at.isoformat()
        with (
            spawned(serve_gridloop, str(data_dir), at) as ours,
            spawned(serve_bare, str(settings.view_store_path), at, DISTRICT) as bare,
        ):
            sides = {
                "gridloop": (ours, [request("GET", f"/v1/board?{q}", token) for q in mix]),
                "bare": (bare, [request("GET", f"/v1/board?{q}") for q in mix]),
            }
            rows = _same_rows(ours, bare, sides["gridloop"][1], sides["bare"][1])
            rounds: dict[str, list[_Round]] = {"gridloop": [], "bare": []}
            for srv, requests in sides.values():  # warm: connections, prepared statements, caches
                _read_round(srv, requests, max(clients, reads // 10), clients)
            for _ in range(repeats):  # interleaved, so that whatever else the machine does hits both sides alike
                for side, (srv, requests) in sides.items():
                    rounds[side].append(_read_round(srv, requests, reads, clients))
            profiled = ours.profiled(lambda: _read_round(ours, sides["gridloop"][1], reads, clients)) if profile else ""
    rate = {side: reads / statistics.median(r.seconds for r in done) for side, done in rounds.items()}
    latency = {side: _latency_ms([x for r in done for x in r.latencies]) for side, done in rounds.items()}
    return Measurement(
        f"API board read (GET /v1/board, {_clients(clients)})",
        reads,
        rate["gridloop"],
        rate["bare"],
        f"bare Starlette on uvicorn: the same SQL and rows, JSON-encoded, no auth ({rows:.0f} rows per answer)",
        profiled,
        Latency(reads * repeats, *latency["gridloop"], *latency["bare"]),
        tuple(_cpu_note(f"{side} board reads, {_clients(clients)}", done, reads) for side, done in rounds.items()),
    )


def _clients(n: int) -> str:
    return f"{n} client" if n == 1 else f"{n} clients"


def _same_rows(ours: Served, bare: Served, gridloop: Sequence[bytes], baseline: Sequence[bytes]) -> float:
    """Check that both servers answer every query of the mix with the same cases; the mean rows per answer."""
    connections = Connection(ours.port), Connection(bare.port)
    try:
        counts = []
        for mine, theirs in zip(gridloop, baseline, strict=True):
            got = [case["case_id"] for case in answer(connections[0], mine)["cases"]]
            expected = [case["case_id"] for case in answer(connections[1], theirs)["cases"]]
            if got != expected:
                raise BenchFailed(f"{mine.split()[1]!r}: gridloop answered {len(got)} cases, the bare app {expected}")
            counts.append(len(got))
    finally:
        for connection in connections:
            connection.close()
    if not any(counts):
        raise BenchFailed("every board query answered no cases: nothing to measure")
    return statistics.mean(counts)


def _cpu_note(what: str, rounds: Sequence[_Round], reads: int) -> str:
    server = statistics.median(r.server_cpu for r in rounds)
    client = statistics.median(r.client_cpu for r in rounds)
    wall = statistics.median(r.seconds for r in rounds)
    return (
        f"{what}: server {1000 * server / reads:.2f} ms CPU per read ({server / wall:.2f} cores busy), "
        f"client {1000 * client / reads:.2f} ms CPU per read"
    )


# -- read-your-writes ----------------------------------------------------------------------------


@dataclass
class _Steps:
    """Latencies of one side's command → visible samples, and of their parts (by name), in seconds."""

    visible: list[float] = field(default_factory=list)
    parts: dict[str, list[float]] = field(default_factory=dict)

    def add(self, started: float, marks: Sequence[tuple[str, float]]) -> None:
        last = started
        for name, at in marks:
            self.parts.setdefault(name, []).append(at - last)
            last = at
        self.visible.append(last - started)

    def aside(self, name: str, seconds: float) -> None:
        """A timing taken beside the samples (not part of them), to tell the parts of a step apart."""
        self.parts.setdefault(name, []).append(seconds)

    def note(self, side: str) -> str:
        shown = ", ".join(f"{name} {1000 * statistics.median(x):.2f}" for name, x in self.parts.items())
        return f"{side} command → visible, median ms per step: {shown}"


def read_your_writes(district: District, commands: int, repeats: int) -> Measurement:
    """Report then register cases over HTTP, each command followed by GET /v1/cases/{id}?position=<its position>,
    vs the same commands in-process: execute, the policies' answer, the runner's catch-up, the query."""
    rows = cases_of(district)  # reported where the district's cases are, as the district's cases are
    grid, category = _most_common(row.grid for row in rows), _most_common(row.category for row in rows)
    pairs = max(1, commands // 2)
    with tempfile.TemporaryDirectory(prefix="gridloop-bench-api-") as tmp:
        served, embedded = Path(tmp) / "served", Path(tmp) / "embedded"
        shutil.copytree(district.data_dir, served)
        shutil.copytree(district.data_dir, embedded)
        token = add_token(
            settings_for(served).token_file, Principal("bench", Role.DISPATCHER, DISTRICT, f"desk:{DISTRICT}")
        )
        rt = open_runtime(settings_for(embedded), ManualClock(district.served_at.astimezone(UTC)))
        try:
            with spawned(serve_gridloop, str(served), district.served_at.isoformat()) as ours:
                connection = Connection(ours.port)
                try:
                    steps = {"gridloop": _Steps(), "in-process": _Steps()}
                    over_http = _HttpSide(connection, token, grid, category)
                    in_process = _InProcess(rt, grid, category)
                    over_http.pair("warm", _Steps())
                    in_process.pair("warm", _Steps())
                    for r in range(repeats):
                        for i in range(pairs // repeats or 1):
                            over_http.pair(f"{r}-{i}", steps["gridloop"])
                            in_process.pair(f"{r}-{i}", steps["in-process"])
                finally:
                    connection.close()
        finally:
            rt.close()
    done = {side: s.visible for side, s in steps.items()}
    return Measurement(
        "API command → visible (report, register)",
        len(done["gridloop"]),
        len(done["gridloop"]) / sum(done["gridloop"]),
        len(done["in-process"]) / sum(done["in-process"]),
        "in-process: Gridloop.execute, the policies, EmbeddedRunner catch-up, the case query; one at a time",
        latency=Latency(len(done["gridloop"]), *_latency_ms(done["gridloop"]), *_latency_ms(done["in-process"])),
        notes=tuple(s.note(side) for side, s in steps.items()),
    )


@dataclass
class _HttpSide:
    connection: Connection
    token: str
    grid: str
    category: str

    def pair(self, name: str, steps: _Steps) -> None:
        report = {"command_id": f"ryw-{name}", "source": "hotline", "category": self.category, "grid": self.grid}
        started = time.perf_counter()
        done = answer(
            self.connection, request("POST", "/v1/cases", self.token, report | {"description": "井盖缺失"}), 201
        )
        posted = time.perf_counter()
        case_id = done["case_id"]
        self.visible(case_id, done["position"], lambda case: True, steps, (started, posted))
        started = time.perf_counter()
        target = f"/v1/cases/{case_id}/register"
        done = answer(self.connection, request("POST", target, self.token, {"command_id": f"ryw-{name}-r"}))
        posted = time.perf_counter()
        self.visible(case_id, done["position"], lambda case: case["status"] != "reported", steps, (started, posted))

    def visible(
        self,
        case_id: str,
        position: int,
        shows: Callable[[dict[str, Any]], bool],
        steps: _Steps,
        times: tuple[float, float],
    ) -> None:
        """GET the case at the command's position (the answer must show it); ``times``: the POST's start and end."""
        seen = answer(self.connection, request("GET", f"/v1/cases/{case_id}?position={position}", self.token))
        if not seen["consistency"]["reached"] or not shows(seen["case"]):
            raise BenchFailed(f"case {case_id} at position {position}: {seen}")
        steps.add(times[0], [("POST", times[1]), ("GET ?position", time.perf_counter())])
        started = time.perf_counter()  # the same read once the views have it: HTTP alone, no waiting
        answer(self.connection, request("GET", f"/v1/cases/{case_id}", self.token))
        steps.aside("(the same GET, no position)", time.perf_counter() - started)


@dataclass
class _InProcess:
    rt: Runtime
    grid: str
    category: str

    def pair(self, name: str, steps: _Steps) -> None:
        case_id = self.step(_report(f"ryw-{name}", self.grid, self.category, f"desk:{DISTRICT}"), steps)
        self.step(c.RegisterCase(command_id=f"ryw-{name}-r", actor=f"desk:{DISTRICT}", case_id=case_id), steps)

    def step(self, command: c.Command, steps: _Steps) -> Any:
        started = time.perf_counter()
        result = self.rt.app.execute(command)
        executed = time.perf_counter()
        self.rt.run_processes()
        answered = time.perf_counter()
        self.rt.catch_up()
        caught_up = time.perf_counter()
        queries.find_case(self.rt.views, str(result.aggregate_id))
        marks = [("execute", executed), ("policies", answered), ("catch-up", caught_up), ("query", time.perf_counter())]
        steps.add(started, marks)
        return result.aggregate_id


def api_paths(quick: bool = False, clients: Sequence[int] = CLIENTS) -> list[Measurement]:
    """The API's benchmarks on the bench's simulated day (the same district for all); the busiest readers profiled."""
    reads, repeats, commands = (300, 3, 40) if quick else (2000, 5, 400)
    with tempfile.TemporaryDirectory(prefix="gridloop-bench-api-") as tmp:
        district = simulated_district(Path(tmp) / "district")
        results = [board_reads(district, reads, repeats, n, profile=n == max(clients)) for n in clients]
        return [*results, read_your_writes(district, commands, repeats)]


if __name__ == "__main__":  # python -m ops.bench.api [--quick] [--clients N]: these rows alone
    import argparse

    from ops.bench import markdown

    parser = argparse.ArgumentParser(prog="python -m ops.bench.api", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts")
    parser.add_argument("--clients", type=int, nargs="+", default=CLIENTS, help="concurrent board readers, per row")
    given = parser.parse_args()
    configure_logging("warning")
    print(markdown(api_paths(given.quick, given.clients)))
