"""What the HTTP API runs on, handed to it by the process that serves it (the API never opens stores itself)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.application import CommandResult, Gridloop
from engine.commands import Command
from projections.api.access import TokenFile
from projections.store import Views
from projections.views import VIEW_NAMES


@dataclass(frozen=True)
class Submitted:
    """A command's result and what the policies recorded in answer to it (embedded mode; empty otherwise)."""

    result: CommandResult
    policies: Sequence[Mapping[str, Any]] = ()


@dataclass
class Backend:
    """The stores, the command path and the settings the API needs; built by ``ops.serve``."""

    app: Gridloop
    """The write side: its command path, and its aggregates for deciding where a command acts."""
    views: Views
    execute: Callable[[Command], Submitted]
    """Runs one command (and, embedded, lets the policies answer it and wakes the projection runner)."""
    tokens: TokenFile
    now: Callable[[], datetime]
    """The clock queries judge 'overdue' by when the caller gives no moment."""
    read_wait_seconds: float = 2.0
    """The longest a read waits for its views to reach the position it asks for."""
    exact_positions: bool = True
    """Embedded mode: a view's tracking is a log position. Kafka mode: per-partition offsets, so only a
    case's own rows can say whether they include a position."""
    open311_public_reads: bool = True
    """Open311 GET endpoints answer without a key (as the spec has it), with public fields only."""
    view_names: Sequence[str] = field(default=VIEW_NAMES)
    write_lock: threading.RLock = field(default_factory=threading.RLock)
    """Held while a command is authorised and run, and by whatever else drives the write side in this process
    (the policies' clock): the intake and the process managers keep in-process state."""

    def view_position(self) -> int:
        """The log position every view has read up to (the lowest of them)."""
        return min(self.views.positions(self.view_names).values())

    async def wait_for(self, position: int, timeout: float) -> tuple[bool, int | None]:
        """Read-your-writes: wait (at most ``timeout`` s) until every view has read ``position``."""
        return await poll(self.view_position, position, timeout)


async def poll(probe: Callable[[], int | None], position: int, timeout: float) -> tuple[bool, int | None]:
    """Ask ``probe`` for a position until it reaches ``position`` or ``timeout`` seconds pass, without blocking the
    event loop. Returns whether it did, and the last position seen.

    The first pauses are short (1 ms, doubling to 20 ms): the embedded runner is woken by every command and
    usually applies it within a few milliseconds, and reading a tracking row costs tens of microseconds.
    """
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        at = probe()
        if at is not None and at >= position:
            return True, at
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False, at
        await asyncio.sleep(min(pause, remaining))
        pause = min(pause * 2, 0.02)
