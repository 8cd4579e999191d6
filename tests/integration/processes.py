"""The gridloop processes an integration test starts, kills and stops, and waiting on what they do."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from time import monotonic, sleep
from typing import Any

import pytest

from tests.integration.kafka_helpers import GRIDLOOP, HANG_GUARD, Deployment


@dataclass
class Child:
    """A gridloop process a test started, its JSON log in a file."""

    process: subprocess.Popen[str]
    log: Path
    args: tuple[str, ...]

    @property
    def pid(self) -> int:
        return self.process.pid

    def events(self, name: str) -> list[dict[str, Any]]:
        """The log lines of this child's structlog event ``name``, oldest first."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            if f'"{name}"' in line:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("event") == name:
                    found.append(entry)
        return found

    def wait_for(
        self, name: str, accept: Callable[[dict[str, Any]], bool] = lambda _: True, after: int = 0
    ) -> dict[str, Any]:
        """Wait until the child logs event ``name`` (its ``after``-th occurrence or later) that ``accept`` takes."""
        deadline = monotonic() + HANG_GUARD
        while True:
            for entry in self.events(name)[after:]:
                if accept(entry):
                    return entry
            if self.process.poll() is not None:
                status = self.process.returncode
                pytest.fail(f"{' '.join(self.args)} exited {status} before logging {name}:\n{self.tail()}")
            if monotonic() > deadline:
                pytest.fail(f"{' '.join(self.args)} did not log {name} within {HANG_GUARD} s:\n{self.tail()}")
            sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no clean-up, no last batch, no goodbye to the group."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=HANG_GUARD)

    def stop(self) -> int:
        """SIGTERM, as an operator stops a follower; returns its exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=HANG_GUARD)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Children:
    """The gridloop processes one test starts; whatever still runs at the end is killed (by its own pid)."""

    deployment: Deployment
    logs: Path
    started: list[Child] = field(default_factory=list)

    def start(self, *args: str, **settings: str | int) -> Child:
        assert GRIDLOOP, "the gridloop console script is not installed in this virtualenv"
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{len(self.started):02d}-{'-'.join(a.strip('-') for a in args)}.log"
        with log.open("w") as output:
            process = subprocess.Popen(
                [GRIDLOOP, "--data-dir", str(self.deployment.data_dir), *args],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                text=True,
                env=self.deployment.env(**settings),
            )
        child = Child(process, log, ("gridloop", *args))
        self.started.append(child)
        return child


@contextmanager
def children(deployment: Deployment, logs: Path) -> Iterator[Children]:
    started = Children(deployment, logs)
    try:
        yield started
    finally:
        for child in started.started:
            if child.process.poll() is None:
                child.kill()


class Background:
    """A function run in a thread of its own (a second simulated day while the log flows); join() re-raises."""

    def __init__(self, target: Callable[..., object], *args: object) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(target, *args), daemon=True)
        self._thread.start()

    def _run(self, target: Callable[..., object], *args: object) -> None:
        try:
            target(*args)
        except BaseException as exc:
            self._error = exc

    def join(self) -> None:
        self._thread.join(timeout=HANG_GUARD)
        assert not self._thread.is_alive(), f"the background work did not end within {HANG_GUARD} s"
        if self._error is not None:
            raise self._error


def wait_until(what: str, condition: Callable[[], bool], poll: float = 0.1) -> None:
    """Wait until ``condition`` holds; fails the test if it does not within the hang guard."""
    deadline = monotonic() + HANG_GUARD
    while not condition():
        if monotonic() > deadline:
            pytest.fail(f"{what}: not within {HANG_GUARD} s")
        sleep(poll)
