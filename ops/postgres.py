"""A local PostgreSQL server from Debian's packages, for development, `make run MODE=distributed` and the tests.

PostgreSQL refuses to run as root: when gridloop runs as root, the cluster's directory is handed to the
``postgres`` user (created by Debian's package) and every server program runs as that user (``runuser``).
Production uses an existing server (``postgres_provisioner = external``); this module never runs there.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from engine.errors import GridloopError

log = structlog.get_logger()

SERVER_USER = "postgres"
DATABASE = "gridloop"
START_TIMEOUT_SECONDS = 60


class PostgresUnavailable(GridloopError):
    """No PostgreSQL server can be started or reached; the message says what is missing."""


@dataclass(frozen=True)
class Server:
    """A running PostgreSQL server and the database gridloop uses on it."""

    host: str
    port: int
    user: str = SERVER_USER
    password: str = field(default="", repr=False)
    dbname: str = DATABASE

    @property
    def dsn(self) -> str:
        """The libpq connection string (``postgresql://user[:password]@host:port/dbname``)."""
        secret = f":{self.password}" if self.password else ""
        return f"postgresql://{self.user}{secret}@{self.host}:{self.port}/{self.dbname}"

    def connect(self, **options: Any) -> Any:
        """A psycopg connection to the database (``options``: psycopg's, e.g. autocommit, connect_timeout)."""
        import psycopg

        return psycopg.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=self.dbname, **options
        )

    def event_store_env(self, schema: str) -> dict[str, str]:
        """The eventsourcing library's environment for an event store in ``schema`` of this database."""
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_SCHEMA": schema,
        }


def binaries() -> Path:
    """The directory of Debian's server programs (initdb, pg_ctl): the newest installed major version."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    raise PostgresUnavailable("PostgreSQL's server programs are missing: install Debian's postgresql package")


class LocalServer:
    """One cluster in ``directory`` (data, log, socket), listening on 127.0.0.1:``port``."""

    def __init__(self, directory: Path, port: int = 0, *, durable: bool = True) -> None:
        self.directory = directory.resolve()
        self.port = port
        self.durable = durable
        """False for throw-away clusters (tests): no fsync, so a test's commits do not wait for the disk."""

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def _port_file(self) -> Path:
        return self.directory / "port"

    def status(self) -> Server | None:
        """The server if it runs and answers, else None."""
        if not (self.data / "postmaster.pid").exists() or not self._port_file.exists():
            return None
        port = int(self._port_file.read_text())
        if self._run("pg_ctl", "status", "-D", str(self.data), check=False).returncode != 0:
            return None
        return Server("127.0.0.1", port) if _accepts(port) else None

    def up(self) -> Server:
        """Start the cluster (initialising it the first time) and create the gridloop database; idempotent."""
        running = self.status()
        if running is not None:
            return running
        self._prepare()
        if not (self.data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data), "-U", SERVER_USER, "--auth=trust", "-E", "UTF8",
                      "--locale=C.UTF-8", "--no-instructions")  # fmt: skip
        port = self.port or _free_port()
        options = [f"-p {port}", "-c listen_addresses=127.0.0.1", f"-k {self.directory}", "-c max_connections=200"]
        if not self.durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        self._port_file.write_text(str(port))
        started = self._run(
            "pg_ctl", "start", "-D", str(self.data), "-l", str(self.directory / "server.log"), "-w",
            "-t", str(START_TIMEOUT_SECONDS), "-o", " ".join(options), check=False,
        )  # fmt: skip
        if started.returncode != 0:
            raise PostgresUnavailable(f"PostgreSQL did not start:\n{started.stdout}{started.stderr}{self._log_tail()}")
        server = Server("127.0.0.1", port)
        create_database(server)
        log.info("postgres_up", port=port, directory=str(self.directory))
        return server

    def down(self) -> None:
        """Stop the server (fast shutdown: open transactions are rolled back); nothing if it is not running."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", check=False)

    def _prepare(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam(SERVER_USER)
            for path in (self.directory, *self.directory.rglob("*")):
                os.chown(path, owner.pw_uid, owner.pw_gid)
            self.directory.chmod(0o700)
            for parent in self.directory.parents:  # the server user must be able to reach its directory
                if not parent.stat().st_mode & 0o001:
                    raise PostgresUnavailable(
                        f"{parent} is not searchable by other users, so the {SERVER_USER} user cannot reach "
                        f"{self.directory}: choose a data directory under a world-searchable path (e.g. /var/tmp)"
                    )

    def _run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(binaries() / program), *args]
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise PostgresUnavailable(
                    f"running as root and there is no {SERVER_USER} user: install Debian's postgresql package"
                ) from None
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd="/")
        if check and done.returncode != 0:
            raise PostgresUnavailable(f"{program} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        return done

    def _log_tail(self, lines: int = 20) -> str:
        path = self.directory / "server.log"
        if not path.exists():
            return ""
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except PermissionError:
            return ""


def create_database(server: Server, name: str = DATABASE) -> None:
    """Create database ``name`` on ``server`` if it does not exist (as the server's superuser)."""
    import psycopg

    with psycopg.connect(
        host=server.host, port=server.port, user=server.user, password=server.password, dbname="postgres",
        autocommit=True,
    ) as connection:  # fmt: skip
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{name}"')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepts(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)


@contextmanager
def throwaway_server(external: str, prefix: str, *, durable: bool) -> Iterator[Server]:
    """The server at ``external`` (host:port, user postgres, trust auth) if given, else a local cluster of its
    own in a new directory under /var/tmp, stopped and removed at the end (tests, benchmarks).

    Not under a 0700 temporary directory of root's: the postgres user could not reach it.
    """
    if external:
        host, _, port = external.rpartition(":")
        server = Server(host or "127.0.0.1", int(port))
        create_database(server)
        yield server
        return
    local = LocalServer(Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp")), durable=durable)
    try:
        yield local.up()
    finally:
        local.down()
        shutil.rmtree(local.directory, ignore_errors=True)
