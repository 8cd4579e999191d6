"""The API's shapes for the OpenAPI document: the times it accepts, and its responses (handlers write the same
fields straight to JSON)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field
from pydantic_core import PydanticCustomError

EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)
"""The times a request may name: far inside what Python's datetime holds, so that converting one to UTC and
adding a deadline's working days to it never overflow (year 1 at +14:00 or 9999 at -14:00 would)."""


def _within_range(moment: datetime) -> datetime:
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise PydanticCustomError(
            "time_out_of_range",
            "Time out of range: from {earliest} up to {latest} (UTC) is allowed",
            {"earliest": str(EARLIEST.date()), "latest": str(LATEST.date())},
        )
    return moment


Moment = Annotated[AwareDatetime, AfterValidator(_within_range)]
"""A time a request names: ISO 8601 with its UTC offset, within EARLIEST and LATEST."""


class Consistency(BaseModel):
    """How the answer relates to the log position the caller asked for (read-your-writes)."""

    requested: int | None = Field(description="The log position the caller asked to see, if any")
    position: int | None = Field(description="The log position the views had read when they answered")
    reached: bool = Field(description="False when the wait timed out: the answer is the current, older state")
    exact: bool = Field(description="False in kafka mode for whole-board reads: views track partitions, not positions")


class Case(BaseModel):
    """One case as the board shows it."""

    case_id: str
    short_id: str
    status: str
    suspended_from: str | None
    category: str
    category_name: str
    source: str
    grid: str
    community: str
    street: str
    desk: str
    unit: str
    worker: str
    accountable: str | None = Field(description="desk:…, unit:… or worker:…; null once the case is not open")
    deadline: datetime | None
    overdue: bool = Field(description="An assignee holds the case past its deadline, judged at `now`")
    escalation_level: int
    escalation_due: datetime | None
    light: str = Field(description="预警灯: '', green, yellow or red")
    reported_at: datetime
    last_occurred_at: datetime
    closed_at: datetime | None
    rework_count: int
    return_count: int
    duplicate_count: int
    merged_into: str | None
    satisfaction: int | None
    description: str
    lon: float | None
    lat: float | None
    version: int
    position: int


class BoardPage(BaseModel):
    cases: list[Case]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")
    now: datetime = Field(description="The moment 'overdue' was judged at")
    consistency: Consistency


class CaseDetail(BaseModel):
    case: Case
    allowed_actions: list[str] = Field(description="The actions the case's state accepts now (the lifecycle's)")
    consistency: Consistency


class GridLoad(BaseModel):
    grid: str
    community: str
    open: int
    overdue: int


class GridLoads(BaseModel):
    grids: list[GridLoad] = Field(description="Every grid with open cases in the caller's view, by code")
    now: datetime = Field(description="The moment 'overdue' was judged at")
    consistency: Consistency


class Summary(BaseModel):
    by_status: dict[str, int]
    open: int
    overdue: int
    closed: int
    escalated: int
    top_grids: list[GridLoad]
    now: datetime
    consistency: Consistency


class TimelineEvent(BaseModel):
    case_id: str
    version: int
    event_type: str
    occurred_at: datetime
    recorded_at: datetime
    actor: str
    details: dict[str, Any]
    position: int


class Timeline(BaseModel):
    case_id: str
    events: list[TimelineEvent]
    consistency: Consistency


class TraceCase(BaseModel):
    """The traced case as the board shows it, with its deadline's status at the trace's `as_of`."""

    case_id: str
    short_id: str
    status: str
    status_name: str = Field(description="The status in Chinese (立案, 派遣, 签收 …)")
    category: str
    category_name: str
    source: str
    grid: str
    community: str
    street: str
    desk: str
    description: str
    reported_at: datetime
    closed_at: datetime | None
    accountable: str | None = Field(description="desk:…, unit:… or worker:…; null once the case is not open")
    deadline: datetime | None
    deadline_status: str = Field(description="'', on_time, yellow or overdue, judged at `as_of`")
    position: int = Field(description="The log position of the case's last event in the trace")


class TraceActor(BaseModel):
    id: str = Field(description="The actor as the log names it (desk:…, W12, policy:supervisor …)")
    kind: str = Field(description="policy, desk, worker, unit, the actor's own prefix, or person")
    policy: str = Field(description="The policy that decided the step ('' for none)")
    policy_version: str


class TraceStep(BaseModel):
    """One step of a case (docs/trace.md)."""

    version: int
    position: int
    event_type: str
    action: str = Field(description="The lifecycle action the event records (dispatch, accept …)")
    action_name: str = Field(description="The action in Chinese (派遣, 签收 …)")
    actor: TraceActor
    occurred_at: datetime
    recorded_at: datetime
    upload_delay_seconds: float
    late_upload: bool = Field(description="Recorded at least 15 minutes after it occurred")
    why: str = Field(description="The reason, note or result the step gave")
    inputs: dict[str, str] = Field(description="The inputs a decision saw")
    details: dict[str, Any] = Field(description="Every field of the event as recorded")
    state_before: str | None
    state_after: str
    state_name: str
    accountable: str | None = Field(description="Who was accountable after the step, until the next one")
    deadline: datetime | None = Field(description="The deadline in force when the step happened")
    deadline_after: datetime | None
    deadline_status: str = Field(description="'', on_time, yellow (75 % of the limit used) or overdue")
    limit_used: float | None = Field(description="Share of the deadline's working-time limit used by the step")
    clock_paused: bool
    elapsed_seconds: float | None = Field(description="Time in the state the step left, until the next step")
    working_seconds: float | None = Field(description="The working time within it")


class TraceTotal(BaseModel):
    state: str
    state_name: str
    entries: int
    elapsed_seconds: float
    working_seconds: float
    accountable: list[str]
    ongoing: bool


class TraceCalendar(BaseModel):
    zone: str
    working_hours: str


class Trace(BaseModel):
    """痕迹: the JSON export of a case's trace, with the read's consistency."""

    format: int = Field(description="The version of these fields")
    case: TraceCase
    as_of: datetime | None
    calendar: TraceCalendar
    steps: list[TraceStep]
    totals: list[TraceTotal]
    consistency: Consistency


class QueuedCase(BaseModel):
    case_id: str
    short_id: str
    worker: str
    unit: str
    status: str
    suspended_from: str | None
    category: str
    category_name: str
    grid: str
    deadline: datetime | None
    assigned_at: datetime | None
    position: int


class Queue(BaseModel):
    worker: str
    cases: list[QueuedCase]
    consistency: Consistency


class Division(BaseModel):
    code: str
    name: str
    level: str
    parent: str
    district: str
    street: str
    community: str
    households: int | None
    boundary: str | None = Field(description="GeoJSON geometry (grids only)")
    retired: bool


class Divisions(BaseModel):
    divisions: list[Division]


class Me(BaseModel):
    name: str
    role: str
    jurisdiction: str
    actor: str
    commands: list[str]
    reads: list[str]


class PolicyAction(BaseModel):
    event: str
    case_id: str
    actor: str
    details: dict[str, str]


class CommandAccepted(BaseModel):
    """What a command did: the aggregate it touched and the log position to pass to a read."""

    command_id: str
    case_id: str | None = Field(description="The case the command touched (case commands and reports)")
    aggregate_id: str
    position: int
    events: list[str]
    duplicate: bool = Field(description="The command id was seen before: the first result, nothing recorded")
    policies: list[PolicyAction] = Field(description="What the dispatch policy and supervisor did in answer")


class Problem(BaseModel):
    """RFC 9457 problem details; gridloop adds the members named in each problem type."""

    type: str
    title: str
    status: int
    detail: str
    allowed_actions: list[str] | None = None
