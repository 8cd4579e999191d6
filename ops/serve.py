"""`gridloop serve`: the HTTP API on this process's stores, with the projection runner and the policies beside it."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
import uvicorn
from fastapi import FastAPI

from engine.clock import Clock, SystemClock
from engine.commands import Command
from ops.config import Settings
from ops.runtime import PolicyEvent, Runtime, open_runtime
from projections.api.access import TokenFile
from projections.api.app import create_app
from projections.api.backend import Backend, Submitted

log = structlog.get_logger()

POLL_SECONDS = 0.2
"""How often the embedded runner looks at the log when no command has woken it (another process may write)."""


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT, so a following process finishes its batch and closes cleanly."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def policy_json(event: PolicyEvent) -> dict[str, Any]:
    return {"event": event.event, "case_id": str(event.case_id), "actor": event.actor, "details": event.details}


class Service:
    """One serving process: the runtime, the runner's and the policies' threads, and the backend the API uses."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.rt: Runtime = open_runtime(settings, self.clock)
        self.embedded = self.rt.runner is not None
        try:
            tokens = TokenFile(settings.token_file)
        except BaseException:
            self.rt.close()
            raise
        self.backend = Backend(
            app=self.rt.app,
            views=self.rt.views,
            execute=self.execute,
            tokens=tokens,
            now=self.clock.now,
            read_wait_seconds=settings.read_wait_seconds,
            exact_positions=self.embedded,
            open311_public_reads=settings.open311_public_reads,
        )
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def execute(self, command: Command) -> Submitted:
        """The command path of `gridloop do`: run it; embedded, let the policies answer and wake the runner."""
        result = self.rt.app.execute(command)
        policies = self.rt.run_processes() if self.embedded else None
        self._wake.set()
        return Submitted(result, [policy_json(e) for e in policies.events] if policies else [])

    def start(self) -> None:
        """Catch the views up, then follow the log (embedded) and let the policies act on the clock."""
        if self.embedded:
            self.rt.catch_up()
            self._spawn("gridloop-runner", self._follow)
            if self.rt.processes is not None:
                self._spawn("gridloop-policies", self._supervise)

    def _spawn(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                self.rt.catch_up()
            except Exception:
                log.exception("runner_failed")  # logged and retried: a locked store or a full disk passes
                self._stop.wait(1.0)
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()

    def _supervise(self) -> None:
        while not self._stop.wait(self.settings.supervise_every):
            try:
                with self.backend.write_lock:
                    run = self.rt.run_processes(self.clock.now())
                if run.events:
                    self._wake.set()
            except Exception:
                log.exception("policies_failed")

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self.rt.close()

    def app(self) -> FastAPI:
        return create_app(self.backend)


def server(service: Service, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for the service's API; our access log replaces uvicorn's (which prints raw query strings)."""
    config = uvicorn.Config(service.app(), host=host, port=port, access_log=False, log_config=None, lifespan="off")
    return uvicorn.Server(config)


@contextmanager
def serving(settings: Settings, clock: Clock | None = None, port: int = 0) -> Iterator[tuple[Service, str]]:
    """Serve in a background thread (tests, benchmarks): yields the service and its base URL once it listens."""
    service = Service(settings, clock)
    service.start()
    srv = server(service, settings.api_host, port)
    thread = threading.Thread(target=srv.run, name="gridloop-http", daemon=True)
    thread.start()
    try:
        while not srv.started:
            if not thread.is_alive():
                raise RuntimeError("the HTTP server did not start (see the log)")
            threading.Event().wait(0.01)
        bound = srv.servers[0].sockets[0].getsockname()
        yield service, f"http://{bound[0]}:{bound[1]}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
        service.stop()
