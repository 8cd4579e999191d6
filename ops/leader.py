"""One active process of a kind (the relay, the policies) per deployment: a PostgreSQL session-level advisory lock.

The lock lives as long as the session that took it: when the holding process dies (even by SIGKILL) or its
connection breaks, PostgreSQL ends the session and frees the lock, and a standby that keeps trying takes it.
The lock is for liveness (one process works, the others wait); the relay's safety does not rest on it alone:
Kafka fences a zombie producer by its transactional id, so a relay that lost the lock without noticing yet
cannot commit a batch after its successor has started.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

import structlog

from engine.errors import GridloopError
from ops.postgres import Server

log = structlog.get_logger()

RETRY_SECONDS = 0.5
"""How often a standby asks for the lock again (a takeover comes within this of the holder's session ending)."""

KEEPALIVE: dict[str, Any] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
    # The server side of the same session: a holder whose host vanished (no FIN, no RST) loses its session,
    # and so the lock, within about 11 s instead of the operating system's default of two hours.
    "options": "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3 "
    "-c tcp_user_timeout=10000",
}
"""Connection options of the lock's session: a dead peer is noticed in seconds on both sides (TCP only)."""


class LeadershipLost(GridloopError):
    """The lock's session ended (the server restarted, the network broke, an operator ended it): stop working."""


def lock_key(*parts: str) -> int:
    """The advisory lock's 64-bit key for a role in a deployment, e.g. (schema, "relay", transactional id):
    two deployments on one database never block each other."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class LeaderLock:
    """A session-level advisory lock on a dedicated autocommit connection: held until released or the session ends."""

    def __init__(self, server: Server, key: int, name: str) -> None:
        self.server = server
        self.key = key
        self.name = name
        """What the lock elects, for the log (relay, supervise)."""
        self._connection: Any = None
        self._unreachable = False
        self.held = False

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; never waits. A broken connection is replaced at the next try."""
        import psycopg

        if self.held:
            return True
        try:
            if self._connection is None or self._connection.closed:
                self._connection = self._connect()
            row = self._connection.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        except psycopg.OperationalError as exc:
            if not self._unreachable:  # once per outage, not at every try
                log.warning("leader_lock_unreachable", lock=self.name, error=str(exc).strip())
            self._unreachable = True
            self._drop_connection()
            return False
        self._unreachable = False
        self.held = bool(row and row[0])
        return self.held

    def acquire(
        self, stop: threading.Event, on_standby: Callable[[], None] | None = None, retry: float = RETRY_SECONDS
    ) -> bool:
        """Wait for the lock, trying every ``retry`` seconds, until it is held (True) or ``stop`` is set (False).
        ``on_standby`` is called once, when the first try finds the lock held elsewhere."""
        if self.try_acquire():
            return True
        if on_standby is not None:
            on_standby()
        while not stop.wait(retry):
            if self.try_acquire():
                return True
        return False

    def check(self) -> None:
        """Raise LeadershipLost unless the lock's session is still alive (one round trip to the server)."""
        import psycopg

        if not self.held:
            raise LeadershipLost(f"the {self.name} lock is not held by this process")
        try:
            self._connection.execute("SELECT 1")
        except psycopg.Error as exc:
            self.held = False
            self._drop_connection()
            raise LeadershipLost(
                f"the {self.name} lock's session to PostgreSQL ended ({str(exc).strip() or type(exc).__name__}): "
                "another process may be active now; this one stops"
            ) from None

    def release(self) -> None:
        """Give the lock up (closing the session frees it; a standby takes it at its next try)."""
        self.held = False
        self._drop_connection()

    def __enter__(self) -> LeaderLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def _connect(self) -> Any:
        return self.server.connect(
            autocommit=True,
            application_name=f"gridloop-{self.name}",
            **KEEPALIVE,
        )

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception as exc:  # a broken socket may fail to close; the server ends the session anyway
                log.debug("leader_lock_close_failed", lock=self.name, error=str(exc))
