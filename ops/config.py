"""Configuration in one place: environment and an optional TOML file, typed and checked at start-up."""

from __future__ import annotations

import importlib
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from ops.postgres import Server

MODES = ("embedded", "kafka", "distributed")
"""embedded: one process on SQLite; kafka: SQLite store, views fed from Kafka; distributed: PostgreSQL store and
views fed from Kafka by consumer-group workers, one active relay, API replicas (docs/deploy.md)."""
KAFKA_PROVISIONERS = ("local", "container", "external")
POSTGRES_PROVISIONERS = ("local", "external")
SCHEMA_NAME = r"[a-z_][a-z0-9_]{0,62}"
"""A PostgreSQL schema gridloop creates: a plain lower-case identifier, so it never needs quoting."""
LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_RELAY_BATCH = 50_000
HOST_PORT = r"[^\s,]+:\d{1,5}"
DISPATCH_POLICIES = ("balanced", "grid-owner", "none")
"""engine.dispatch.POLICIES by name, and none (the desk's people dispatch every case by hand)."""
CALENDARS = ("china", "weekdays", "every-day")
"""Working days: mainland China's (weekends, public holidays, 调休), Monday to Friday only, or every day."""
WORKING_HOURS = r"(\d{2}):(\d{2})-(\d{2}):(\d{2})"


class ConfigError(ValueError):
    """A configuration value that gridloop cannot use; the message says which and what is allowed."""


@dataclass(frozen=True)
class Settings:
    """Everything gridloop reads from its surroundings."""

    data_dir: Path = Path("var")
    mode: str = "embedded"
    log_format: str = "auto"
    log_level: str = "info"
    read_wait_seconds: float = 2.0
    projection_batch_size: int = 500
    # Kafka (mode "kafka", the relay and `gridloop kafka`): see docs/kafka.md.
    kafka_provisioner: str = "local"
    """Where the broker comes from: local (Maven Central jars on this machine's Java), container
    (testcontainers, where a Docker engine is reachable) or external (kafka_bootstrap)."""
    kafka_bootstrap: str = ""
    """host:port[,host:port] of an external cluster (kafka_provisioner = external)."""
    kafka_version: str = "3.9.1"
    kafka_cache_dir: Path = Path.home() / ".cache" / "gridloop" / "kafka"
    """Where the broker's jars are kept between runs (outside the work tree)."""
    kafka_topic_prefix: str = "gridloop"
    kafka_partitions: int = 6
    kafka_replication: int = 1
    kafka_group: str = "gridloop-views"
    """The consumer group of the projection workers (and the name of their dead-letter topic)."""
    kafka_session_timeout_ms: int = 10_000
    """How long a projection worker may be silent before the group gives its partitions to another."""
    relay_transactional_id: str = "gridloop-relay"
    """One id for every relay of an event store: a restarted relay fences its killed predecessor."""
    relay_batch_size: int = 5000
    # PostgreSQL (mode "distributed" and `gridloop postgres`): see docs/deploy.md.
    postgres_provisioner: str = "local"
    """Where the server comes from: local (Debian's PostgreSQL, a cluster in data_dir/postgres started by
    `gridloop postgres up`; postgres_host and postgres_port are then ignored) or external (a server you run)."""
    postgres_host: str = "127.0.0.1"
    postgres_port: int = 5432
    postgres_user: str = "postgres"
    postgres_password: str = field(default="", repr=False)
    """Never printed nor logged; prefer an EnvironmentFile readable by gridloop's user alone (ops/systemd)."""
    postgres_dbname: str = "gridloop"
    postgres_schema: str = "gridloop"
    """The event store's schema (events, seals, checkpoints, receipts, the policies' tracking)."""
    postgres_views_schema: str = "gridloop_views"
    """The views' schema, apart from the events so it can be dropped and rebuilt from the topics."""
    postgres_pool_size: int = 5
    """Connections each process keeps to the event store (and as many more under load): an API replica
    serves its requests from this pool; mind the server's max_connections times the number of processes."""
    # Dispatch and supervision (process managers over the log): see README, "Dispatch and supervision".
    dispatch_policy: str = "balanced"
    """Who dispatches registered cases: a policy of engine.dispatch (balanced, grid-owner), or none."""
    supervise: bool = True
    """Whether the supervisor (督办) warns before deadlines and escalates late cases."""
    calendar: str = "china"
    """The working days deadlines are counted in: china, weekdays or every-day."""
    working_hours: str = "08:30-17:30"
    """The working hours of a working day, local time (Asia/Shanghai), HH:MM-HH:MM."""
    supervise_every: float = 60.0
    """Seconds between the policies' looks at the clock while `gridloop serve` runs (签收超时, 预警, 督办)."""
    # The HTTP API (`gridloop serve`): see docs/api.md.
    api_host: str = "127.0.0.1"
    api_port: int = 8311
    api_tokens: Path = Path()
    """The token file (hashes of bearer tokens and their principals); empty: tokens.toml in data_dir."""
    open311_public_reads: bool = True
    """Open311 GET endpoints answer without a key, with public fields only (as GeoReport v2 has it)."""
    # Resident notifications (`gridloop notify`): see docs/callbacks.md.
    notify_sender: str = "console"
    """Who delivers resident notifications: console (prints each; development) or package.module:Name, a Sender
    class or factory called with no arguments (an SMS gateway's or the resident app's adapter)."""
    notify_max_attempts: int = 5
    """Attempts at one notification before it is marked failed."""
    notify_backoff_seconds: float = 30.0
    """The wait after a first failed attempt; it doubles after each further one."""

    @property
    def working_day(self) -> tuple[time, time]:
        """The start and end of working hours."""
        span = _working_span(self.working_hours)
        if span is None:
            raise ConfigError(f"working_hours: {self.working_hours!r}; allowed: {HOURS_ALLOWED}")
        return span

    @property
    def token_file(self) -> Path:
        return self.api_tokens if str(self.api_tokens) not in ("", ".") else self.data_dir / "tokens.toml"

    @property
    def event_store_path(self) -> Path:
        return self.data_dir / "events.sqlite"

    @property
    def kafka_dir(self) -> Path:
        """The local broker's data, logs and state file (kafka_provisioner = local)."""
        return self.data_dir / "kafka"

    @property
    def views_follow_kafka(self) -> bool:
        """Whether the views are fed from the Kafka topics by `gridloop project` workers (not in this process)."""
        return self.mode != "embedded"

    @property
    def uses_postgres(self) -> bool:
        """Whether the event store and the views live on PostgreSQL (mode distributed)."""
        return self.mode == "distributed"

    @property
    def postgres_dir(self) -> Path:
        """The local cluster's data, log and socket (postgres_provisioner = local)."""
        return self.data_dir / "postgres"

    @property
    def view_store_path(self) -> Path:
        """The views of this mode: views fed from Kafka never share a file with views fed from the store."""
        return self.data_dir / ("views.sqlite" if self.mode == "embedded" else f"views-{self.mode}.sqlite")

    def postgres_server(self) -> Server:
        """The configured PostgreSQL server and database; for the local provisioner it must be up (a clear error
        if it is not), and its address is the one the running cluster chose."""
        from ops.postgres import LocalServer, PostgresUnavailable, Server

        if self.postgres_provisioner == "external":
            return Server(
                self.postgres_host, self.postgres_port, self.postgres_user, self.postgres_password, self.postgres_dbname
            )
        running = LocalServer(self.postgres_dir).status()
        if running is None:
            raise PostgresUnavailable(
                f"no PostgreSQL server is up in {self.postgres_dir} (local provisioner): start it with "
                "`gridloop postgres up`, or set postgres_provisioner = external and postgres_host/postgres_port"
            )
        return replace(running, dbname=self.postgres_dbname)

    def event_store_env(self, server: Server | None = None) -> dict[str, str]:
        """The eventsourcing library's environment for this store: SQLite, or PostgreSQL in mode distributed (on
        ``server``, default the configured one)."""
        if not self.uses_postgres:
            return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(self.event_store_path)}
        server = server or self.postgres_server()
        return server.event_store_env(self.postgres_schema) | {
            "POSTGRES_POOL_SIZE": str(self.postgres_pool_size),
            "POSTGRES_MAX_OVERFLOW": str(self.postgres_pool_size),
        }


ENV_PREFIX = "GRIDLOOP_"


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from (lowest first) defaults, the file named by GRIDLOOP_CONFIG, GRIDLOOP_* variables, overrides."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_file = environ.get(ENV_PREFIX + "CONFIG")
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"GRIDLOOP_CONFIG: {path} is not a file")
        try:
            values.update(tomllib.loads(path.read_text(encoding="utf-8")).get("gridloop", {}))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"GRIDLOOP_CONFIG: {path} is not valid TOML ({exc})") from None
    for f in fields(Settings):
        key = ENV_PREFIX + f.name.upper()
        if key in environ:
            values[f.name] = environ[key]
    values.update({k: v for k, v in overrides.items() if v is not None})
    return _validated(values)


def _validated(values: Mapping[str, Any]) -> Settings:
    known = {f.name: f for f in fields(Settings)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{unknown[0]}: not a setting; known settings: {', '.join(known)}")
    settings = Settings()
    for name, raw in values.items():
        settings = replace(settings, **{name: _convert(name, raw)})
    if settings.mode not in MODES:
        raise ConfigError(f"mode: {settings.mode!r} is not available; allowed: {', '.join(MODES)}")
    if settings.log_format not in LOG_FORMATS:
        raise ConfigError(f"log_format: {settings.log_format!r}; allowed: {', '.join(LOG_FORMATS)}")
    if settings.log_level not in LOG_LEVELS:
        raise ConfigError(f"log_level: {settings.log_level!r}; allowed: {', '.join(LOG_LEVELS)}")
    if not 0 < settings.read_wait_seconds <= 60:
        raise ConfigError(f"read_wait_seconds: {settings.read_wait_seconds}; allowed: more than 0, at most 60")
    if not 1 <= settings.projection_batch_size <= 100_000:
        raise ConfigError(f"projection_batch_size: {settings.projection_batch_size}; allowed: 1 to 100000")
    if settings.kafka_provisioner not in KAFKA_PROVISIONERS:
        raise ConfigError(
            f"kafka_provisioner: {settings.kafka_provisioner!r}; allowed: {', '.join(KAFKA_PROVISIONERS)}"
        )
    if settings.kafka_provisioner == "external" and not settings.kafka_bootstrap:
        raise ConfigError("kafka_bootstrap: needed when kafka_provisioner is external (host:port[,host:port])")
    if settings.kafka_bootstrap and not all(re.fullmatch(HOST_PORT, a) for a in settings.kafka_bootstrap.split(",")):
        raise ConfigError(f"kafka_bootstrap: {settings.kafka_bootstrap!r}; allowed: host:port[,host:port]")
    if not re.fullmatch(r"\d+\.\d+\.\d+", settings.kafka_version):
        raise ConfigError(f"kafka_version: {settings.kafka_version!r}; allowed: an Apache Kafka release, such as 3.9.1")
    if not 1 <= settings.kafka_partitions <= 1000:
        raise ConfigError(f"kafka_partitions: {settings.kafka_partitions}; allowed: 1 to 1000")
    if not 6_000 <= settings.kafka_session_timeout_ms <= 300_000:
        raise ConfigError(
            f"kafka_session_timeout_ms: {settings.kafka_session_timeout_ms}; allowed: 6000 to 300000 "
            "(the broker's default group.min/max.session.timeout.ms)"
        )
    if not 1 <= settings.kafka_replication <= 10:
        raise ConfigError(f"kafka_replication: {settings.kafka_replication}; allowed: 1 to 10")
    if not 1 <= settings.relay_batch_size <= MAX_RELAY_BATCH:
        raise ConfigError(f"relay_batch_size: {settings.relay_batch_size}; allowed: 1 to {MAX_RELAY_BATCH}")
    _check_postgres(settings)
    if settings.dispatch_policy not in DISPATCH_POLICIES:
        raise ConfigError(f"dispatch_policy: {settings.dispatch_policy!r}; allowed: {', '.join(DISPATCH_POLICIES)}")
    if settings.calendar not in CALENDARS:
        raise ConfigError(f"calendar: {settings.calendar!r}; allowed: {', '.join(CALENDARS)}")
    if not 0.05 <= settings.supervise_every <= 3600:
        raise ConfigError(f"supervise_every: {settings.supervise_every}; allowed: 0.05 to 3600 seconds")
    if not 0 <= settings.api_port <= 65535:
        raise ConfigError(f"api_port: {settings.api_port}; allowed: 0 (any free port) to 65535")
    if not settings.api_host:
        raise ConfigError("api_host: empty; allowed: an address to listen on, such as 127.0.0.1 or 0.0.0.0")
    if _working_span(settings.working_hours) is None:
        raise ConfigError(f"working_hours: {settings.working_hours!r}; allowed: {HOURS_ALLOWED}")
    if not 1 <= settings.notify_max_attempts <= 100:
        raise ConfigError(f"notify_max_attempts: {settings.notify_max_attempts}; allowed: 1 to 100")
    if not 0 <= settings.notify_backoff_seconds <= 86_400:
        raise ConfigError(f"notify_backoff_seconds: {settings.notify_backoff_seconds}; allowed: 0 to 86400")
    if settings.notify_sender != CONSOLE_SENDER:
        sender_factory(settings.notify_sender)
    return settings


def _check_postgres(settings: Settings) -> None:
    """The PostgreSQL settings; checked in every mode, so a wrong value is found before the switch to distributed.
    The password is never part of a message."""
    if settings.postgres_provisioner not in POSTGRES_PROVISIONERS:
        raise ConfigError(
            f"postgres_provisioner: {settings.postgres_provisioner!r}; allowed: {', '.join(POSTGRES_PROVISIONERS)}"
        )
    if not settings.postgres_host or any(c.isspace() for c in settings.postgres_host):
        raise ConfigError(f"postgres_host: {settings.postgres_host!r}; allowed: a host name or address")
    if not 1 <= settings.postgres_port <= 65535:
        raise ConfigError(f"postgres_port: {settings.postgres_port}; allowed: 1 to 65535")
    for name in ("postgres_user", "postgres_dbname"):
        value = getattr(settings, name)
        if not value or len(value) > 63:
            raise ConfigError(f"{name}: {value!r}; allowed: a PostgreSQL name of 1 to 63 characters")
    for name in ("postgres_schema", "postgres_views_schema"):
        value = getattr(settings, name)
        if not re.fullmatch(SCHEMA_NAME, value):
            raise ConfigError(
                f"{name}: {value!r}; allowed: a lower-case identifier (letters, digits, _; not starting with a digit)"
            )
    if settings.postgres_schema == settings.postgres_views_schema:
        raise ConfigError(
            f"postgres_views_schema: {settings.postgres_views_schema!r} is the event store's schema; allowed: "
            "another schema (the views are dropped and rebuilt apart from the events)"
        )
    if not 1 <= settings.postgres_pool_size <= 100:
        raise ConfigError(f"postgres_pool_size: {settings.postgres_pool_size}; allowed: 1 to 100")


CONSOLE_SENDER = "console"
SENDER_ALLOWED = "console, or package.module:Name of a Sender class or factory (see docs/callbacks.md)"


def sender_factory(spec: str) -> Callable[[], Any]:
    """The class or factory a ``notify_sender`` of the form ``package.module:Name`` names (imported here)."""
    module_name, colon, attribute = spec.partition(":")
    if not colon or not re.fullmatch(r"[A-Za-z_][\w.]*", module_name) or not re.fullmatch(r"[A-Za-z_]\w*", attribute):
        raise ConfigError(f"notify_sender: {spec!r} is not an import path; allowed: {SENDER_ALLOWED}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"notify_sender: {spec!r} cannot be imported ({exc}); allowed: {SENDER_ALLOWED}") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ConfigError(
            f"notify_sender: {module_name} has no class or factory {attribute!r}; allowed: {SENDER_ALLOWED}"
        )
    return cast(Callable[[], Any], factory)


KEEP_CASE = frozenset({
    "notify_sender", "postgres_user", "postgres_password", "postgres_dbname", "postgres_schema",
    "postgres_views_schema",
})  # fmt: skip
"""Text settings read as given: an import path names a class in its own case; PostgreSQL names and the password
are case-sensitive (a schema name in upper case is refused, not silently lowered)."""

HOURS_ALLOWED = "HH:MM-HH:MM, the start before the end, such as 08:30-17:30"


def _working_span(text: str) -> tuple[time, time] | None:
    """``08:30-17:30`` as two times; None unless both are times of day and the first is the earlier."""
    found = re.fullmatch(WORKING_HOURS, text)
    if found is None:
        return None
    try:
        start, end = (time(int(h), int(m)) for h, m in (found.group(1, 2), found.group(3, 4)))
    except ValueError:
        return None
    return (start, end) if start < end else None


def _convert(name: str, raw: Any) -> Any:
    kind = type(getattr(Settings(), name))
    try:
        if kind is float:
            return float(raw)
        if kind is int:
            return int(raw)
        if kind is bool:
            return _to_bool(raw)
        if issubclass(kind, Path):
            return Path(raw)
        if name == "postgres_password":
            return str(raw)  # exactly as given: spaces may belong to it
        if name in KEEP_CASE:
            return str(raw).strip()
        return str(raw).strip().lower()
    except (TypeError, ValueError):
        allowed = "; allowed: true or false (yes/no, on/off, 1/0)" if kind is bool else ""
        raise ConfigError(f"{name}: {raw!r} is not a {kind.__name__}{allowed}") from None


def _to_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ValueError("not a yes/no value")
