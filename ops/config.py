"""Configuration in one place: environment and an optional TOML file, typed and checked at start-up."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

MODES = ("embedded",)
LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")


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

    @property
    def event_store_path(self) -> Path:
        return self.data_dir / "events.sqlite"

    @property
    def view_store_path(self) -> Path:
        return self.data_dir / "views.sqlite"

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
    return settings


def _convert(name: str, raw: Any) -> Any:
    kind = type(getattr(Settings(), name))
    try:
        if kind is float:
            return float(raw)
        if kind is int:
            return int(raw)
        if issubclass(kind, Path):
            return Path(raw)
        return str(raw).strip().lower()
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: {raw!r} is not a {kind.__name__}") from None
