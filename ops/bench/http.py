"""The API benchmarks' harness: servers in processes of their own, the bare baseline app, a lean HTTP client."""

from __future__ import annotations

import asyncio
import cProfile
import json
import multiprocessing
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engine.clock import ManualClock
from engine.lifecycle import ASSIGNEE_STATES
from ops.config import Settings, load_settings
from ops.logs import configure_logging
from ops.serve import Service, server
from projections.projection import iso, sql_set

START_TIMEOUT = 60.0


class BenchFailed(RuntimeError):
    """A run did not do the work it measures (an error answer, or the two sides answering different rows)."""


def settings_for(data_dir: Path) -> Settings:
    """A served district's settings: the bench's own (no GRIDLOOP_* variables), warnings only."""
    # The policies' clock would run every minute while serving: an hour apart, it stays out of the runs.
    return load_settings(environ={}, data_dir=data_dir, log_level="warning", log_format="json", supervise_every=3600)


def bare_uvicorn(app: Any) -> uvicorn.Server:
    """A server configured as ops.serve.server configures gridloop's: same loop, same protocol, no access log."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, access_log=False, log_config=None, lifespan="off")
    return uvicorn.Server(config)


def _run(srv: uvicorn.Server, control: Pipe) -> None:
    """Serve on the main thread until told to stop; send the port once listening; profile when asked."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        serving = asyncio.create_task(srv.serve())
        while not srv.started:
            if serving.done():
                serving.result()  # raises what stopped it
                raise BenchFailed("the server stopped before it listened")
            await asyncio.sleep(0.01)
        control.send(srv.servers[0].sockets[0].getsockname()[1])
        profiler = cProfile.Profile()
        while (message := await loop.run_in_executor(None, control.recv)) != "stop":
            if message == "profile":
                profiler.enable()  # on the loop's thread: the one that answers the requests
            else:
                profiler.disable()
                from ops.bench.kafka import profile_text  # the suite's profile format; kafka-python only now

                control.send(profile_text(profiler))
        srv.should_exit = True
        await serving

    with asyncio.Runner(loop_factory=srv.config.get_loop_factory()) as runner:
        runner.run(main())


def serve_gridloop(data_dir: str, served_at: str, control: Pipe) -> None:
    """A child process serving as `gridloop serve` does: the Service (runner, policies) and its uvicorn server."""
    settings = settings_for(Path(data_dir))
    configure_logging(settings.log_level, settings.log_format)
    service = Service(settings, ManualClock(datetime.fromisoformat(served_at).astimezone(UTC)))
    try:
        service.start()
        _run(server(service, "127.0.0.1", 0), control)
    finally:
        service.stop()


def serve_bare(view_store: str, now: str, district: str, control: Pipe) -> None:
    """A child process serving the board's SQL from a bare Starlette app: the baseline of the board reads."""
    configure_logging("warning")
    _run(bare_uvicorn(bare_board_app(Path(view_store), datetime.fromisoformat(now), district)), control)


OVERDUE_SQL = f"(status IN {sql_set(ASSIGNEE_STATES)} AND deadline IS NOT NULL AND deadline < :now)"
IN_DISTRICT_SQL = "grid IN (SELECT code FROM division WHERE district = :scope_division AND level = 'grid')"


def bare_board_app(view_store: Path, now: datetime, district: str) -> Starlette:
    """GET /v1/board (status, grid, overdue, limit) as a hand-written handler would: the SQL gridloop's board query
    runs for a district's dispatcher, its rows as they come from SQLite, JSON-encoded. No token, no validation."""
    connection = sqlite3.connect(f"file:{view_store}?mode=ro", uri=True, check_same_thread=False)
    connection.row_factory = sqlite3.Row

    async def board(request: Request) -> Response:
        given = request.query_params
        where, params = [], {"now": iso(now), "limit": int(given.get("limit", 100)), "scope_division": district}
        if "status" in given:
            where.append("status IN (:status_0)")
            params["status_0"] = given["status"]
        if "grid" in given:
            where.append("grid = :grid")
            params["grid"] = given["grid"]
        if given.get("overdue") == "true":
            where.append(OVERDUE_SQL)
        conditions = " AND ".join([*where, IN_DISTRICT_SQL])
        sql = f"SELECT * FROM board WHERE {conditions} ORDER BY reported_at, case_id LIMIT :limit"  # noqa: S608
        rows = connection.execute(sql, params).fetchall()
        body = json.dumps({"cases": [dict(row) for row in rows]}, ensure_ascii=False)
        return Response(body, media_type="application/json")

    return Starlette(routes=[Route("/v1/board", board)])


@dataclass
class Served:
    """A server running in a child process: its port, and the pipe that profiles and stops it."""

    process: multiprocessing.process.BaseProcess
    control: Pipe
    port: int

    def profiled(self, run: Callable[[], object]) -> str:
        """Run ``run`` with the server's loop thread under cProfile; the profile as text."""
        self.control.send("profile")
        run()
        self.control.send("stats")
        text: str = self.control.recv()
        return text

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process has used so far: /proc/<pid>/stat."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def spawned(target: Callable[..., None], *args: str) -> Iterator[Served]:
    """Run ``target(*args, control)`` in a child process until the block ends; the server it started."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing of the bench's state, GIL or loop
    ours, theirs = context.Pipe()
    process = context.Process(target=target, args=(*args, theirs), daemon=True)
    process.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not ours.poll(0.1):
            if not process.is_alive() or time.monotonic() > deadline:
                raise BenchFailed(f"the server ({target.__name__}) did not listen (exit code {process.exitcode})")
        yield Served(process, ours, ours.recv())
        ours.send("stop")
        process.join(timeout=10)
    finally:
        if process.is_alive():
            process.kill()
            process.join()


# -- the client: plain sockets, keep-alive -------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection on a plain socket: far less client CPU per request than httpx."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def exchange(self, raw: bytes) -> tuple[int, bytes]:
        """Send one request; its answer's status and body."""
        self.sock.sendall(raw)
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._receive()
        head, rest = self.buffer[:end].decode("latin-1"), self.buffer[end + 4 :]
        length = next(
            (int(line.split(":", 1)[1]) for line in head.split("\r\n") if line.lower().startswith("content-length:")),
            None,
        )
        if length is None:
            raise BenchFailed(f"an answer without Content-Length: {head!r}")
        self.buffer = rest
        while len(self.buffer) < length:
            self._receive()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(head[9:12]), body

    def _receive(self) -> None:
        chunk = self.sock.recv(262144)
        if not chunk:
            raise BenchFailed("the server closed the connection")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def request(method: str, target: str, token: str | None = None, body: Any = None) -> bytes:
    """One request's bytes (JSON body, bearer token)."""
    payload = b"" if body is None else json.dumps(body).encode()
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


def answer(connection: Connection, raw: bytes, expected: int = 200) -> dict[str, Any]:
    """The JSON body of the answer to ``raw``, which must have status ``expected``."""
    status, body = connection.exchange(raw)
    if status != expected:
        raise BenchFailed(f"{raw.split(b' ', 2)[:2]!r} answered {status}: {body[:300]!r}")
    decoded: dict[str, Any] = json.loads(body)
    return decoded
