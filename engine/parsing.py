"""Commands from loose input (CLI text, JSON): typed fields, or an error naming the field and what it expects."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

from engine.commands import COMMANDS, Command
from engine.errors import InvalidCommand, UnknownReference


def command_fields(command_class: type[Command]) -> dict[str, tuple[Any, bool]]:
    """Each field of a command: its type and whether it is required."""
    hints = typing.get_type_hints(command_class)
    return {
        f.name: (hints[f.name], f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        for f in dataclasses.fields(command_class)
    }


def parse_command(name: str, data: Mapping[str, Any]) -> Command:
    """Build a command from loosely typed input (CLI strings, JSON), with a clear error for each bad field."""
    command_class = COMMANDS.get(name)
    if command_class is None:
        raise UnknownReference("command", name, sorted(COMMANDS))
    fields = command_fields(command_class)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InvalidCommand(unknown[0], f"is not a field of {name}", ", ".join(fields))
    values: dict[str, Any] = {}
    for field_name, (hint, required) in fields.items():
        if field_name not in data or data[field_name] is None:
            if required:
                raise InvalidCommand(field_name, "is missing", _type_name(hint))
            continue
        values[field_name] = _convert(field_name, hint, data[field_name])
    return command_class(**values)


def _convert(field_name: str, hint: Any, value: Any) -> Any:
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)
    if optional:
        if value == "":
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    try:
        return _CONVERTERS[typing.get_origin(hint) or hint](value)
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidCommand(field_name, f"{value!r} is malformed ({exc})", _type_name(hint)) from None


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "y", "pass", "passed"):
        return True
    if text in ("false", "no", "0", "n", "fail", "failed"):
        return False
    raise ValueError("not a yes/no value")


def _to_datetime(value: Any) -> datetime:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if when.tzinfo is None:
        raise ValueError("a time needs its UTC offset, e.g. 2026-11-23T09:30+08:00")
    return when


def _to_float(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return number


def _to_int(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("not a whole number")
    return int(value)


def _to_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return [str(item) for item in value]


def _to_dict(value: Any) -> dict[str, str]:
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else {}
    return {str(k): str(v) for k, v in dict(value).items()}


def _to_str(value: Any) -> str:
    if not isinstance(value, str | int | float):
        raise TypeError("not a text")
    return str(value)


_CONVERTERS: dict[Any, Any] = {
    str: _to_str,
    int: _to_int,
    float: _to_float,
    bool: _to_bool,
    datetime: _to_datetime,
    UUID: lambda v: v if isinstance(v, UUID) else UUID(str(v)),
    list: _to_list,
    dict: _to_dict,
}


def _type_name(hint: Any) -> str:
    names = {
        str: "text",
        int: "a whole number",
        float: "a number",
        bool: "true or false",
        datetime: "an ISO 8601 time with offset",
        UUID: "a case or patrol id (UUID)",
        list: "a comma-separated list",
        dict: "a JSON object",
    }
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return names.get(typing.get_origin(hint) or hint, str(hint))
