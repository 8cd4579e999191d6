"""Configuration in one place: environment and an optional TOML file, typed and checked at start-up."""

from __future__ import annotations

import importlib
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import time
from pathlib import Path
from typing import Any, cast

MODES = ("embedded", "kafka")
KAFKA_PROVISIONERS = ("local", "container", "external")
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
    def view_store_path(self) -> Path:
        """The views of this mode: views fed from Kafka never share a file with views fed from the store."""
        return self.data_dir / ("views.sqlite" if self.mode == "embedded" else f"views-{self.mode}.sqlite")

    def event_store_env(self) -> dict[str, str]:
        """The eventsourcing library's environment for this store."""
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(self.event_store_path)}


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


KEEP_CASE = frozenset({"notify_sender"})
"""Text settings read as given: an import path names a class in its own case."""

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
