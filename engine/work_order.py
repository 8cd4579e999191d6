"""The work order (工单 / 案件): its lifecycle through the closed loop, one event per step."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import event

from engine.base import GridloopAggregate
from engine.errors import IllegalTransition, InvalidCommand
from engine.lifecycle import (
    HAND_OVER_COMPLETING,
    HAND_OVER_PROCESSING,
    TRANSITIONS,
    Status,
    accountable_party,
    allowed_actions,
    is_open,
)

SOURCES = ("patrol", "resident", "hotline", "app", "department", "sensor")
"""Where a case can come from: 巡查, 居民, 12345 热线, 手机端, 部门交办, 智能感知."""

RESIDENT_SOURCES = ("resident", "hotline", "app")
"""Sources with a resident behind the case, who is called back (回访) and told of its progress. A grid worker's
own patrol finding, a department's task and a sensor alarm have no resident to answer to."""

REJECT_REASONS = ("duplicate", "not_admitted", "abolished_certificate", "out_of_scope", "invalid")
"""Why a report may be refused at registration (不予立案)."""

ESCALATION_LEVELS = {
    1: "grid_leader",  # 网格长
    2: "community",  # 社区
    3: "street",  # 街道
    4: "district",  # 区/县
    5: "city",  # 市
}
"""The five levels of 督办, bottom up."""

STEPS = ("dispatch", "accept", "handle", "verify")
"""The timed steps of a case: 立案+派遣, 签收, 处置, 核查 (each with its limit in the catalogue)."""

CALL_BACK_MISSES = {
    "no_answer": "无人接听",
    "unreachable": "无法接通",
    "wrong_number": "号码错误",
    "refused": "拒绝回访",
}
"""Why a call-back attempt did not reach the resident (回访未果), with the words an operator records."""

WARNINGS = {50: "green", 75: "yellow", 100: "red"}
"""Deadline warnings by share of the limit used, and the board light each sets: 催办, 临期 (yellow), 超期 (red)."""


class WorkOrder(GridloopAggregate):
    """A case in the closed loop: reported, registered, dispatched, handled, verified, closed, called back."""

    @event("Reported")
    def __init__(
        self,
        *,
        id: UUID,  # the library's name for the aggregate id
        source: str,
        category: str,
        grid: str,
        desk: str,
        description: str,
        reporter: str,
        lon: float | None,
        lat: float | None,
        patrol_id: UUID | None,
        occurred_at: datetime,
        actor: str,
        service_item: str = "",
        processing_unit: str = "",
        admission_item: str = "",
        certificate: str = "",
    ) -> None:
        self.source = source
        self.category = category
        self.grid = grid
        self.desk = desk
        self.description = description
        self.reporter = reporter
        self.lon = lon
        self.lat = lat
        self.patrol_id = patrol_id
        self.reported_at = occurred_at
        self.status = Status.REPORTED
        self.unit = ""
        self.worker = ""
        self.deadline: datetime | None = None
        self.escalation_level = 0
        self.suspended_from: Status | None = None
        self.merged_into: UUID | None = None
        self.duplicates: list[UUID] = []
        self.rework_count = 0
        self.return_count = 0
        self.last_occurred_at = occurred_at
        self.service_item = service_item  # 全县通办: the desk is the accepting and completing unit
        self.processing_unit = processing_unit
        self.handed_back = False
        self.admission_item = admission_item
        self.certificate = certificate
        self.suspended_at: datetime | None = None

    # -- who is accountable (事事有人办) ------------------------------------------------

    @property
    def is_open(self) -> bool:
        return is_open(self.status)

    @property
    def accountable(self) -> str | None:
        """The one party accountable for the case now, or None once it is no longer open."""
        return accountable_party(self.status, self.suspended_from, self.desk, self.unit, self.worker)

    def allowed_actions(self) -> tuple[str, ...]:
        return allowed_actions(self.status)

    def _require(self, action: str) -> None:
        if self.status not in TRANSITIONS[action].sources:
            raise IllegalTransition(self.status.value, action, self.allowed_actions())

    # -- commands: check, then record one fact ----------------------------------------

    def register(self, *, category: str, note: str, occurred_at: datetime, actor: str) -> None:
        """立案: accept the report as a case, possibly correcting its category."""
        self._require("register")
        self._registered(category=category, note=note, occurred_at=occurred_at, actor=actor)

    def reject(self, *, reason_code: str, reason: str, occurred_at: datetime, actor: str, rule: str = "") -> None:
        """不予立案: refuse the report, with the reason (and the rule, when one decides it)."""
        self._require("reject")
        if reason_code not in REJECT_REASONS:
            raise InvalidCommand("reason_code", f"{reason_code!r} is not a rejection reason", ", ".join(REJECT_REASONS))
        _need_text("reason", reason)
        self._rejected(reason_code=reason_code, reason=reason, rule=rule, occurred_at=occurred_at, actor=actor)

    def recategorise(self, *, category: str, reason: str, occurred_at: datetime, actor: str) -> None:
        """改类: the case belongs to another category; routing follows the new one."""
        self._require("recategorise")
        if category == self.category:
            raise InvalidCommand("category", f"the case is already {category}", "a different category")
        _need_text("reason", reason)
        self._recategorised(
            category=category, previous=self.category, reason=reason, occurred_at=occurred_at, actor=actor
        )

    def hand_over(
        self, *, stage: str, to_unit: str, deadline: datetime | None, reason: str, occurred_at: datetime, actor: str
    ) -> None:
        """通办流转: 全县通办's hand-overs — to the processing unit (户籍地办理), then back to the completing unit."""
        if not self.service_item:
            raise InvalidCommand("case_id", "is not a 全县通办 service request", "a case reported with a service item")
        self._require("hand_over")
        _need_text("reason", reason)
        if stage == HAND_OVER_PROCESSING:
            if self.status is Status.HANDLED:
                raise IllegalTransition(self.status.value, "hand_over to processing", ("hand_over to completing",))
            if to_unit != self.processing_unit:
                raise InvalidCommand("to_unit", f"{to_unit!r} is not the processing unit", self.processing_unit)
            if deadline is None or deadline <= occurred_at:
                raise InvalidCommand("deadline", "is missing or not after the hand-over", "a time after it")
            from_unit = self.desk
        elif stage == HAND_OVER_COMPLETING:
            if self.status is not Status.HANDLED or self.handed_back:
                raise IllegalTransition(self.status.value, "hand_over to completing", self.allowed_actions())
            if to_unit != self.desk:
                raise InvalidCommand("to_unit", f"{to_unit!r} is not the completing unit", self.desk)
            from_unit = self.unit
        else:
            raise InvalidCommand("stage", f"{stage!r} is not a hand-over stage", "processing, completing")
        self._handed_over(
            stage=stage, from_unit=from_unit, to_unit=to_unit, deadline=deadline, reason=reason,
            occurred_at=occurred_at, actor=actor,
        )  # fmt: skip

    def merge_into(self, *, target: WorkOrder, reason: str, occurred_at: datetime, actor: str) -> None:
        """合并: this report duplicates ``target``; the target carries on."""
        self._require("merge")
        if target.id == self.id:
            raise InvalidCommand("into_case", "a case cannot be merged into itself")
        target._require("link_duplicate")  # only an open case can absorb a duplicate
        self._merged(into_case=target.id, reason=reason, occurred_at=occurred_at, actor=actor)
        target._duplicate_linked(duplicate_case=self.id, occurred_at=occurred_at, actor=actor)

    def dispatch(
        self,
        *,
        unit: str,
        worker: str,
        deadline: datetime,
        policy: str,
        policy_version: str,
        reason: str,
        inputs: dict[str, str],
        occurred_at: datetime,
        actor: str,
    ) -> None:
        """派遣: hand the case to a unit and/or a worker, with a deadline and the decision's reasons."""
        self._require("dispatch")
        _check_assignment(unit, worker, deadline, occurred_at, reason, policy, policy_version)
        self._dispatched(
            unit=unit,
            worker=worker,
            deadline=deadline,
            policy=policy,
            policy_version=policy_version,
            reason=reason,
            inputs=dict(inputs),
            occurred_at=occurred_at,
            actor=actor,
        )

    def reassign(
        self,
        *,
        unit: str,
        worker: str,
        deadline: datetime | None,
        policy: str,
        policy_version: str,
        reason: str,
        inputs: dict[str, str],
        occurred_at: datetime,
        actor: str,
    ) -> None:
        """改派: move the case to another unit or worker; it must be signed for again."""
        self._require("reassign")
        new_deadline = deadline or self.deadline
        assert new_deadline is not None  # a dispatched case always has one
        _check_assignment(unit, worker, new_deadline, occurred_at, reason, policy, policy_version)
        if (unit, worker) == (self.unit, self.worker):
            raise InvalidCommand("worker", "the case is already assigned there", "a different unit or worker")
        self._reassigned(
            unit=unit,
            worker=worker,
            deadline=new_deadline,
            policy=policy,
            policy_version=policy_version,
            reason=reason,
            inputs=dict(inputs),
            occurred_at=occurred_at,
            actor=actor,
        )

    def accept(self, *, occurred_at: datetime, actor: str) -> None:
        """签收: the assignee signs for the case."""
        self._require("accept")
        if self.worker and actor != self.worker:
            raise InvalidCommand("actor", f"{actor!r} cannot sign for a case assigned to {self.worker!r}", self.worker)
        self._accepted(occurred_at=occurred_at, actor=actor)

    def return_(self, *, reason: str, occurred_at: datetime, actor: str) -> None:
        """退单: the assignee sends the case back to the dispatch desk, with the reason."""
        self._require("return")
        _need_text("reason", reason)
        self._returned(reason=reason, occurred_at=occurred_at, actor=actor)

    def request_extension(self, *, until: datetime, reason: str, occurred_at: datetime, actor: str) -> None:
        """申请延期: ask for a later deadline."""
        self._require("request_extension")
        _need_text("reason", reason)
        if self.deadline is not None and until <= self.deadline:
            raise InvalidCommand(
                "until", f"{until.isoformat()} is not after the deadline", f"after {self.deadline.isoformat()}"
            )
        self._extension_requested(until=until, reason=reason, occurred_at=occurred_at, actor=actor)

    def grant_extension(self, *, note: str, occurred_at: datetime, actor: str) -> None:
        """批准延期: the deadline moves to the requested time."""
        self._require("grant_extension")
        self._extension_granted(new_deadline=self.requested_until, note=note, occurred_at=occurred_at, actor=actor)

    def deny_extension(self, *, reason: str, occurred_at: datetime, actor: str) -> None:
        """驳回延期: the deadline stays."""
        self._require("deny_extension")
        _need_text("reason", reason)
        self._extension_denied(reason=reason, occurred_at=occurred_at, actor=actor)

    def suspend(self, *, reason: str, occurred_at: datetime, actor: str) -> None:
        """挂账: park the case (funding, weather, a court); the accountable party stays."""
        self._require("suspend")
        _need_text("reason", reason)
        self._suspended(reason=reason, occurred_at=occurred_at, actor=actor)

    def resume(self, *, note: str, occurred_at: datetime, actor: str, deadline: datetime | None = None) -> None:
        """恢复: take a suspended case up again where it stood; its deadline moves by the time it was parked."""
        self._require("resume")
        if deadline is not None and self.deadline is not None and deadline < self.deadline:
            raise InvalidCommand("deadline", "a resumption cannot shorten the deadline", "at or after the old one")
        self._resumed(note=note, deadline=deadline, occurred_at=occurred_at, actor=actor)

    def report_handling(self, *, result: str, photos: list[str], occurred_at: datetime, actor: str) -> None:
        """处置反馈: the handler reports what was done, with evidence."""
        self._require("report_handling")
        _need_text("result", result)
        self._handling_reported(result=result, photos=list(photos), occurred_at=occurred_at, actor=actor)

    def verify(self, *, passed: bool, note: str, occurred_at: datetime, actor: str) -> None:
        """核查: passed closes the case (结案); failed sends it back for rework (返工)."""
        self._require("verify")
        if self.service_item and not self.handed_back:
            raise IllegalTransition("handled, not yet handed back", "verify", ("hand_over to completing (受理地办结)",))
        if not passed:
            _need_text("note", note)
        self._verified(passed=passed, note=note, occurred_at=occurred_at, actor=actor)

    def escalate(
        self,
        *,
        level: int,
        reason: str,
        occurred_at: datetime,
        actor: str,
        policy: str = "",
        policy_version: str = "",
        inputs: dict[str, str] | None = None,
        due: datetime | None = None,
    ) -> None:
        """督办: raise the case to a supervising level (1 grid leader … 5 city), by a person or the supervisor."""
        self._require("escalate")
        if policy and not policy_version:
            raise InvalidCommand("policy_version", "a policy decision must name the policy's version")
        if level not in ESCALATION_LEVELS:
            raise InvalidCommand("level", f"{level} is not a supervision level", "1 (grid leader) to 5 (city)")
        if level < self.escalation_level:
            raise InvalidCommand(
                "level",
                f"the case is already escalated to level {self.escalation_level}",
                f"{self.escalation_level} to 5",
            )
        _need_text("reason", reason)
        self._escalated(
            level=level, reason=reason, policy=policy, policy_version=policy_version, inputs=dict(inputs or {}),
            due=due, occurred_at=occurred_at, actor=actor,
        )  # fmt: skip

    def warn_deadline(
        self,
        *,
        step: str,
        threshold: int,
        due: datetime,
        policy: str,
        policy_version: str,
        occurred_at: datetime,
        actor: str,
    ) -> None:
        """预警 / 催办: a step has used half (催办), three quarters (临期, yellow) or all (超期, red) of its limit."""
        self._require("warn_deadline")
        if step not in STEPS:
            raise InvalidCommand("step", f"{step!r} is not a timed step", ", ".join(STEPS))
        if threshold not in WARNINGS:
            raise InvalidCommand("threshold", f"{threshold} is not a warning threshold", "50, 75 or 100 (per cent)")
        if not policy or not policy_version:
            raise InvalidCommand("policy", "a warning must name the policy and version that raised it")
        self._deadline_warned(
            step=step, threshold=threshold, light=WARNINGS[threshold], due=due, policy=policy,
            policy_version=policy_version, occurred_at=occurred_at, actor=actor,
        )  # fmt: skip

    def call_back(self, *, satisfaction: int, fixed: bool, note: str, occurred_at: datetime, actor: str) -> None:
        """回访: the resident's verdict; "not fixed" reopens the case."""
        self._require("call_back")
        if not 1 <= satisfaction <= 5:
            raise InvalidCommand(
                "satisfaction", f"{satisfaction} is out of range", "1 (very dissatisfied) to 5 (very satisfied)"
            )
        self._called_back(satisfaction=satisfaction, fixed=fixed, note=note, occurred_at=occurred_at, actor=actor)

    def miss_call_back(self, *, reason: str, occurred_at: datetime, actor: str) -> None:
        """回访未果: a call-back attempt did not reach the resident; the case stays closed, awaiting another try."""
        self._require("miss_call_back")
        if reason not in CALL_BACK_MISSES:
            raise InvalidCommand(
                "reason", f"{reason!r} is not a reason a call-back is missed", ", ".join(CALL_BACK_MISSES)
            )
        self._call_back_missed(reason=reason, occurred_at=occurred_at, actor=actor)

    def reopen(self, *, reason: str, occurred_at: datetime, actor: str) -> None:
        """重新打开: a closed case comes back (a complaint, a failed spot check)."""
        self._require("reopen")
        _need_text("reason", reason)
        self._reopened(reason=reason, occurred_at=occurred_at, actor=actor)

    # -- facts: the body of each is the state change ----------------------------------

    @event("Registered")
    def _registered(self, category: str, note: str, occurred_at: datetime, actor: str) -> None:
        self.category = category
        self._move(Status.REGISTERED, occurred_at)

    @event("Rejected")
    def _rejected(self, reason_code: str, reason: str, occurred_at: datetime, actor: str, rule: str = "") -> None:
        self._move(Status.REJECTED, occurred_at)

    @event("Recategorised")
    def _recategorised(self, category: str, previous: str, reason: str, occurred_at: datetime, actor: str) -> None:
        self.category = category
        self.last_occurred_at = max(self.last_occurred_at, occurred_at)

    @event("HandedOver")
    def _handed_over(
        self,
        stage: str,
        from_unit: str,
        to_unit: str,
        deadline: datetime | None,
        reason: str,
        occurred_at: datetime,
        actor: str,
    ) -> None:
        if stage == HAND_OVER_PROCESSING:
            self.unit, self.worker, self.deadline = to_unit, "", deadline
            self._move(Status.DISPATCHED, occurred_at)
        else:
            self.handed_back = True
            self.last_occurred_at = max(self.last_occurred_at, occurred_at)

    @event("Merged")
    def _merged(self, into_case: UUID, reason: str, occurred_at: datetime, actor: str) -> None:
        self.merged_into = into_case
        self._move(Status.MERGED, occurred_at)

    @event("DuplicateLinked")
    def _duplicate_linked(self, duplicate_case: UUID, occurred_at: datetime, actor: str) -> None:
        self.duplicates.append(duplicate_case)
        self.last_occurred_at = max(self.last_occurred_at, occurred_at)

    @event("Dispatched")
    def _dispatched(
        self,
        unit: str,
        worker: str,
        deadline: datetime,
        policy: str,
        policy_version: str,
        reason: str,
        inputs: dict[str, str],
        occurred_at: datetime,
        actor: str,
    ) -> None:
        self.unit, self.worker, self.deadline = unit, worker, deadline
        self._move(Status.DISPATCHED, occurred_at)

    @event("Reassigned")
    def _reassigned(
        self,
        unit: str,
        worker: str,
        deadline: datetime,
        policy: str,
        policy_version: str,
        reason: str,
        inputs: dict[str, str],
        occurred_at: datetime,
        actor: str,
    ) -> None:
        self.unit, self.worker, self.deadline = unit, worker, deadline
        self._move(Status.DISPATCHED, occurred_at)

    @event("Accepted")
    def _accepted(self, occurred_at: datetime, actor: str) -> None:
        self._move(Status.ACCEPTED, occurred_at)

    @event("Returned")
    def _returned(self, reason: str, occurred_at: datetime, actor: str) -> None:
        self._release()
        self.return_count += 1
        self._move(Status.RETURNED, occurred_at)

    @event("ExtensionRequested")
    def _extension_requested(self, until: datetime, reason: str, occurred_at: datetime, actor: str) -> None:
        self.requested_until = until
        self._move(Status.EXTENSION_REQUESTED, occurred_at)

    @event("ExtensionGranted")
    def _extension_granted(self, new_deadline: datetime, note: str, occurred_at: datetime, actor: str) -> None:
        self.deadline = new_deadline
        self._move(Status.ACCEPTED, occurred_at)

    @event("ExtensionDenied")
    def _extension_denied(self, reason: str, occurred_at: datetime, actor: str) -> None:
        self._move(Status.ACCEPTED, occurred_at)

    @event("Suspended")
    def _suspended(self, reason: str, occurred_at: datetime, actor: str) -> None:
        self.suspended_from = self.status
        self.suspended_at = occurred_at
        self._move(Status.SUSPENDED, occurred_at)

    @event("Resumed")
    def _resumed(self, note: str, occurred_at: datetime, actor: str, deadline: datetime | None = None) -> None:
        previous = self.suspended_from
        assert previous is not None
        self.suspended_from = self.suspended_at = None
        if deadline is not None:
            self.deadline = deadline
        self._move(previous, occurred_at)

    @event("HandlingReported")
    def _handling_reported(self, result: str, photos: list[str], occurred_at: datetime, actor: str) -> None:
        self._move(Status.HANDLED, occurred_at)

    @event("Verified")
    def _verified(self, passed: bool, note: str, occurred_at: datetime, actor: str) -> None:
        if passed:
            self._move(Status.CLOSED, occurred_at)
        else:
            self._reopen(occurred_at)

    @event("Escalated")
    def _escalated(
        self,
        level: int,
        reason: str,
        occurred_at: datetime,
        actor: str,
        policy: str = "",
        policy_version: str = "",
        inputs: dict[str, str] = {},  # noqa: B006 - never mutated; the wire type is a map, never null
        due: datetime | None = None,
    ) -> None:
        self.escalation_level = level
        self.last_occurred_at = max(self.last_occurred_at, occurred_at)

    @event("DeadlineWarned")
    def _deadline_warned(
        self,
        step: str,
        threshold: int,
        light: str,
        due: datetime,
        policy: str,
        policy_version: str,
        occurred_at: datetime,
        actor: str,
    ) -> None:
        self.last_occurred_at = max(self.last_occurred_at, occurred_at)

    @event("CalledBack")
    def _called_back(self, satisfaction: int, fixed: bool, note: str, occurred_at: datetime, actor: str) -> None:
        self.satisfaction = satisfaction
        if fixed:
            self._move(Status.EVALUATED, occurred_at)
        else:
            self._reopen(occurred_at)

    @event("CallBackMissed")
    def _call_back_missed(self, reason: str, occurred_at: datetime, actor: str) -> None:
        self.last_occurred_at = max(self.last_occurred_at, occurred_at)

    @event("Reopened")
    def _reopened(self, reason: str, occurred_at: datetime, actor: str) -> None:
        self._reopen(occurred_at)

    def _reopen(self, occurred_at: datetime) -> None:
        """返工: back to the desk, which dispatches the rework (to the same party or another)."""
        self._release()
        self.rework_count += 1
        self._move(Status.REOPENED, occurred_at)

    def _release(self) -> None:
        """The assignee and their deadline are gone: the desk holds the case until the next dispatch."""
        self.unit, self.worker, self.deadline = "", "", None
        self.handed_back = False

    def _move(self, status: Status, occurred_at: datetime) -> None:
        self.status = status
        self.last_occurred_at = max(self.last_occurred_at, occurred_at)


def _need_text(field: str, value: str) -> None:
    if not value or not value.strip():
        raise InvalidCommand(field, "is empty", "a non-empty text")


def _check_assignment(
    unit: str,
    worker: str,
    deadline: datetime,
    occurred_at: datetime,
    reason: str,
    policy: str,
    policy_version: str,
) -> None:
    if not unit and not worker:
        raise InvalidCommand("unit", "neither a unit nor a worker was given", "a unit, a worker, or both")
    if deadline <= occurred_at:
        raise InvalidCommand(
            "deadline", f"{deadline.isoformat()} is not after the dispatch time", f"after {occurred_at.isoformat()}"
        )
    _need_text("reason", reason)
    if policy and not policy_version:
        raise InvalidCommand("policy_version", "a policy decision must name the policy's version")


def event_names() -> tuple[str, ...]:
    """The names of every work-order event type."""
    return tuple(
        name
        for name, value in vars(WorkOrder).items()
        if isinstance(value, type) and issubclass(value, WorkOrder.Event) and name != "Event"
    )
