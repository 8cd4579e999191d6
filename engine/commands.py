"""Commands: what an operator, a worker, a resident or a policy asks the engine to do."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

from engine.errors import InvalidCommand, UnknownReference


@dataclass(frozen=True, kw_only=True)
class Command:
    """A request to change something, with a client command id that makes it idempotent."""

    name: ClassVar[str] = ""
    command_id: str
    actor: str
    occurred_at: datetime | None = None  # when it happened in the street; defaults to now

    def fingerprint(self) -> str:
        """A digest of everything but the command id: the same id must mean the same command."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "command_id"}
        text = json.dumps([self.name, fields], sort_keys=True, default=str, ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, kw_only=True)
class CaseCommand(Command):
    """A command on one existing case."""

    case_id: UUID


# -- the closed loop --------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ReportCase(Command):
    """上报: a new case from a patrol, a resident, the hotline, the app, a department or a sensor."""

    name = "report"
    source: str
    category: str
    grid: str
    description: str
    reporter: str = ""
    lon: float | None = None
    lat: float | None = None


@dataclass(frozen=True, kw_only=True)
class RegisterCase(CaseCommand):
    name = "register"
    category: str = ""  # empty keeps the reported category
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class RejectCase(CaseCommand):
    name = "reject"
    reason_code: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class MergeCase(CaseCommand):
    name = "merge"
    into_case: UUID
    reason: str = "duplicate report"


@dataclass(frozen=True, kw_only=True)
class DispatchCase(CaseCommand):
    name = "dispatch"
    reason: str
    unit: str = ""
    worker: str = ""
    deadline: datetime | None = None  # defaults to the category's time limit
    policy: str = ""  # empty: an operator (the actor) decided
    policy_version: str = ""
    inputs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ReassignCase(DispatchCase):
    name = "reassign"


@dataclass(frozen=True, kw_only=True)
class AcceptCase(CaseCommand):
    name = "accept"


@dataclass(frozen=True, kw_only=True)
class ReturnCase(CaseCommand):
    name = "return"
    reason: str


@dataclass(frozen=True, kw_only=True)
class RequestExtension(CaseCommand):
    name = "request_extension"
    until: datetime
    reason: str


@dataclass(frozen=True, kw_only=True)
class GrantExtension(CaseCommand):
    name = "grant_extension"
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class DenyExtension(CaseCommand):
    name = "deny_extension"
    reason: str


@dataclass(frozen=True, kw_only=True)
class SuspendCase(CaseCommand):
    name = "suspend"
    reason: str


@dataclass(frozen=True, kw_only=True)
class ResumeCase(CaseCommand):
    name = "resume"
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class ReportHandling(CaseCommand):
    name = "report_handling"
    result: str
    photos: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class VerifyCase(CaseCommand):
    name = "verify"
    passed: bool
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class EscalateCase(CaseCommand):
    name = "escalate"
    level: int
    reason: str


@dataclass(frozen=True, kw_only=True)
class CallBack(CaseCommand):
    name = "call_back"
    satisfaction: int
    fixed: bool
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class ReopenCase(CaseCommand):
    name = "reopen"
    reason: str


# -- the reference model ----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class EstablishDivision(Command):
    name = "establish_division"
    code: str
    division_name: str
    level: str
    parent: str = ""


@dataclass(frozen=True, kw_only=True)
class DrawGrid(Command):
    name = "draw_grid"
    code: str
    grid_name: str
    community: str
    households: int
    boundary: str  # GeoJSON Polygon geometry, as text


@dataclass(frozen=True, kw_only=True)
class RedrawGrid(Command):
    name = "redraw_grid"
    code: str
    households: int
    boundary: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class RetireGrid(Command):
    name = "retire_grid"
    code: str
    successors: list[str]
    reason: str


@dataclass(frozen=True, kw_only=True)
class AssignStaff(Command):
    name = "assign_staff"
    grid: str
    role: str
    worker: str


@dataclass(frozen=True, kw_only=True)
class EnrollWorker(Command):
    name = "enroll_worker"
    code: str
    worker_name: str
    role: str
    unit: str
    grid: str = ""
    skills: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class SetDuty(Command):
    name = "set_duty"
    worker: str
    on_duty: bool


# -- patrols ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class StartPatrol(Command):
    name = "start_patrol"
    worker: str
    grid: str


@dataclass(frozen=True, kw_only=True)
class VisitCheckpoint(Command):
    name = "visit_checkpoint"
    patrol_id: UUID
    lon: float
    lat: float
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class ReportFinding(Command):
    name = "report_finding"
    patrol_id: UUID
    category: str
    description: str
    lon: float | None = None
    lat: float | None = None


@dataclass(frozen=True, kw_only=True)
class EndPatrol(Command):
    name = "end_patrol"
    patrol_id: UUID


COMMANDS: dict[str, type[Command]] = {
    c.name: c
    for c in (
        ReportCase,
        RegisterCase,
        RejectCase,
        MergeCase,
        DispatchCase,
        ReassignCase,
        AcceptCase,
        ReturnCase,
        RequestExtension,
        GrantExtension,
        DenyExtension,
        SuspendCase,
        ResumeCase,
        ReportHandling,
        VerifyCase,
        EscalateCase,
        CallBack,
        ReopenCase,
        EstablishDivision,
        DrawGrid,
        RedrawGrid,
        RetireGrid,
        AssignStaff,
        EnrollWorker,
        SetDuty,
        StartPatrol,
        VisitCheckpoint,
        ReportFinding,
        EndPatrol,
    )
}


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
