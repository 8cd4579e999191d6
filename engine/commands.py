"""Commands: what an operator, a worker, a resident or a policy asks the engine to do."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import UUID


@dataclass(frozen=True, kw_only=True)
class Command:
    """A request to change something, with a client command id that makes it idempotent."""

    name: ClassVar[str] = ""
    command_id: str
    actor: str
    occurred_at: datetime | None = None  # when it happened in the street; defaults to now

    def fingerprint(self) -> str:
        """A digest of everything but the command id: the same id must mean the same command."""
        fields = {name: _canonical(getattr(self, name)) for name in field_names(type(self)) if name != "command_id"}
        text = _fingerprint_json([self.name, fields])
        return hashlib.sha256(text.encode()).hexdigest()


def field_names(command: type[Command]) -> tuple[str, ...]:
    """The command class's field names, in order (``dataclasses.fields`` walks the class on every call)."""
    names = _field_names.get(command)
    if names is None:
        names = _field_names[command] = tuple(f.name for f in dataclasses.fields(command))
    return names


_field_names: dict[type[Command], tuple[str, ...]] = {}


_fingerprint_json = json.JSONEncoder(sort_keys=True, default=str, ensure_ascii=False).encode
"""What ``json.dumps(..., sort_keys=True, default=str, ensure_ascii=False)`` writes, with one encoder for all:
stored receipts' fingerprints were taken with it, so the text must stay byte for byte the same."""


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
    description: str
    grid: str = ""  # empty: located from lon/lat by point-in-polygon
    reporter: str = ""
    lon: float | None = None
    lat: float | None = None
    service_item: str = ""  # 全县通办 service item; the case is accepted here and processed where registered
    registered_in: str = ""  # 户籍地: the grid of the resident's registration, for a service item
    admission_item: str = ""  # 准入事项: the admitted item a department's task claims to be
    certificate: str = ""  # 证明事项: the certificate a resident asks the community to stamp


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
    rule: str = ""


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
    policy: str = ""  # empty: a person (the actor) decided
    policy_version: str = ""
    inputs: dict[str, str] = field(default_factory=dict)
    due: datetime | None = None  # the rung's own deadline


@dataclass(frozen=True, kw_only=True)
class WarnDeadline(CaseCommand):
    """预警 / 催办: the supervisor's warning that a step's limit is half, three quarters or wholly used."""

    name = "warn_deadline"
    step: str
    threshold: int
    due: datetime
    policy: str
    policy_version: str


@dataclass(frozen=True, kw_only=True)
class RecategoriseCase(CaseCommand):
    """改类: correct a case's category; the dispatch policy re-routes it."""

    name = "recategorise"
    category: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class HandOverCase(CaseCommand):
    """通办流转: hand a 全县通办 request to its processing unit (the hand-back happens with the handling report)."""

    name = "hand_over"
    reason: str
    deadline: datetime | None = None  # defaults to the service item's limit in working days


@dataclass(frozen=True, kw_only=True)
class CallBack(CaseCommand):
    name = "call_back"
    satisfaction: int
    fixed: bool
    note: str = ""


@dataclass(frozen=True, kw_only=True)
class MissCallBack(CaseCommand):
    """回访未果: a call-back attempt that did not reach the resident (no answer, wrong number, refused)."""

    name = "miss_call_back"
    reason: str


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
        WarnDeadline,
        RecategoriseCase,
        HandOverCase,
        CallBack,
        MissCallBack,
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


def _canonical(value: Any) -> Any:
    """The same instant written with another UTC offset is the same command."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).isoformat()
    return value
