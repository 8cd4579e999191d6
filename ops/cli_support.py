"""What the command-line modules share: clean failures, the runtime of one command, the console, times."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from functools import wraps
from typing import Any, ParamSpec, TypeVar
from zoneinfo import ZoneInfo

import click
from rich.console import Console

from engine.clock import Clock, SystemClock
from engine.errors import GridloopError
from ops.config import ConfigError, Settings
from ops.runtime import Runtime, open_runtime

P = ParamSpec("P")
R = TypeVar("R")
LOCAL = ZoneInfo("Asia/Shanghai")
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def fail_cleanly(func: Callable[P, R]) -> Callable[P, R]:
    """Domain and configuration errors become one clear line on stderr and exit status 2."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (GridloopError, ConfigError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper


@contextmanager
def runtime(settings: Settings, clock: Clock | None = None) -> Iterator[Runtime]:
    rt = open_runtime(settings, clock or SystemClock())
    try:
        yield rt
    finally:
        rt.close()


def parse_now(text: str | None) -> datetime:
    if not text:
        return datetime.now(UTC)
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=LOCAL)


def local_time(when: datetime | str | None) -> str:
    if when is None or when == "":
        return "—"
    moment = datetime.fromisoformat(when) if isinstance(when, str) else when
    return moment.astimezone(LOCAL).strftime("%m-%d %H:%M")


def plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
