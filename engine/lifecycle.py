"""The work-order state machine as data: states, actions, and which action is allowed where."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """Where a case (案件 / 工单) stands in the closed loop."""

    REPORTED = "reported"  # 上报 / 受理
    REGISTERED = "registered"  # 立案
    REJECTED = "rejected"  # 不予立案
    MERGED = "merged"  # 合并 (duplicate of another case)
    DISPATCHED = "dispatched"  # 派遣
    ACCEPTED = "accepted"  # 签收
    RETURNED = "returned"  # 退单
    EXTENSION_REQUESTED = "extension_requested"  # 延期申请
    SUSPENDED = "suspended"  # 挂账 / 缓办
    HANDLED = "handled"  # 处置反馈, waiting for 核查
    REOPENED = "reopened"  # 返工
    CLOSED = "closed"  # 结案
    EVALUATED = "evaluated"  # 回访 done, 考评


OPEN: frozenset[Status] = frozenset(
    {
        Status.REPORTED,
        Status.REGISTERED,
        Status.DISPATCHED,
        Status.ACCEPTED,
        Status.RETURNED,
        Status.EXTENSION_REQUESTED,
        Status.SUSPENDED,
        Status.HANDLED,
        Status.REOPENED,
    }
)

# Who is accountable in each open state: the dispatch desk, or the assignee (worker, else unit).
DESK_STATES: frozenset[Status] = frozenset(
    {Status.REPORTED, Status.REGISTERED, Status.RETURNED, Status.HANDLED, Status.REOPENED}
)
ASSIGNEE_STATES: frozenset[Status] = frozenset({Status.DISPATCHED, Status.ACCEPTED, Status.EXTENSION_REQUESTED})


def party(kind: str, code: str) -> str:
    """An accountable party as one string: ``desk:…``, ``unit:…`` or ``worker:…``."""
    return f"{kind}:{code}"


def accountable_party(status: Status, suspended_from: Status | None, desk: str, unit: str, worker: str) -> str | None:
    """事事有人办, the one rule: desk states -> the desk; assignee states -> the worker, else the unit; a suspended
    case keeps the party of the state it was suspended from; nobody once the case is no longer open. An empty
    code is nobody (the accountability audit reports it), never a party named ``unit:``."""
    answers = suspended_from if status is Status.SUSPENDED else status
    if not is_open(status) or answers is None:
        return None
    if answers in DESK_STATES:
        return party("desk", desk) if desk else None
    if answers in ASSIGNEE_STATES and (worker or unit):
        return party("worker", worker) if worker else party("unit", unit)
    return None


HAND_OVER_PROCESSING = "processing"
"""全县通办: the accepting unit hands the case to the processing unit (户籍地办理); it is then dispatched there."""
HAND_OVER_COMPLETING = "completing"
"""全县通办: the processing unit hands the result back to the completing unit (受理地办结), which closes the case."""

RESUME_PREVIOUS = "previous"
"""Target of ``resume``: the state the case was in when it was suspended."""
UNCHANGED = "unchanged"
"""Target of an action that records a fact without moving the case."""


@dataclass(frozen=True)
class Transition:
    """One action: the states it is allowed from and the states it can lead to."""

    action: str
    sources: frozenset[Status]
    targets: tuple[Status | str, ...]
    chinese: str


def _t(action: str, sources: set[Status] | frozenset[Status], *targets: Status | str, zh: str) -> Transition:
    return Transition(action, frozenset(sources), targets, zh)


_S = Status
TRANSITIONS: dict[str, Transition] = {
    t.action: t
    for t in (
        _t("register", {_S.REPORTED}, _S.REGISTERED, zh="立案"),
        _t("reject", {_S.REPORTED}, _S.REJECTED, zh="不予立案"),
        _t("merge", {_S.REPORTED, _S.REGISTERED}, _S.MERGED, zh="合并"),
        _t("dispatch", {_S.REGISTERED, _S.RETURNED, _S.REOPENED}, _S.DISPATCHED, zh="派遣"),
        _t(
            "hand_over",
            {_S.REGISTERED, _S.RETURNED, _S.REOPENED, _S.HANDLED},
            _S.DISPATCHED,
            UNCHANGED,
            zh="通办流转",
        ),
        _t("accept", {_S.DISPATCHED}, _S.ACCEPTED, zh="签收"),
        _t("return", {_S.DISPATCHED, _S.ACCEPTED}, _S.RETURNED, zh="退单"),
        _t(
            "reassign",
            {_S.DISPATCHED, _S.ACCEPTED, _S.EXTENSION_REQUESTED},
            _S.DISPATCHED,
            zh="改派",
        ),
        _t("request_extension", {_S.ACCEPTED}, _S.EXTENSION_REQUESTED, zh="申请延期"),
        _t("grant_extension", {_S.EXTENSION_REQUESTED}, _S.ACCEPTED, zh="批准延期"),
        _t("deny_extension", {_S.EXTENSION_REQUESTED}, _S.ACCEPTED, zh="驳回延期"),
        _t(
            "suspend",
            {_S.REGISTERED, _S.DISPATCHED, _S.ACCEPTED},
            _S.SUSPENDED,
            zh="挂账",
        ),
        _t("resume", {_S.SUSPENDED}, RESUME_PREVIOUS, zh="恢复"),
        _t(
            "report_handling",
            {_S.ACCEPTED, _S.EXTENSION_REQUESTED},
            _S.HANDLED,
            zh="处置反馈",
        ),
        _t("verify", {_S.HANDLED}, _S.CLOSED, _S.REOPENED, zh="核查"),
        _t("escalate", OPEN, UNCHANGED, zh="督办"),
        _t("warn_deadline", OPEN, UNCHANGED, zh="预警催办"),
        _t("recategorise", OPEN, UNCHANGED, zh="改类"),
        _t("link_duplicate", OPEN, UNCHANGED, zh="关联重复件"),
        _t("call_back", {_S.CLOSED}, _S.EVALUATED, _S.REOPENED, zh="回访"),
        _t("miss_call_back", {_S.CLOSED}, UNCHANGED, zh="回访未果"),
        _t("reopen", {_S.CLOSED, _S.EVALUATED}, _S.REOPENED, zh="重新打开"),
    )
}


def allowed_actions(status: Status) -> tuple[str, ...]:
    """The actions a case in ``status`` accepts, in table order."""
    return tuple(name for name, t in TRANSITIONS.items() if status in t.sources)


def is_open(status: Status) -> bool:
    """An open case is one somebody must still act on (事事有人办)."""
    return status in OPEN


EVENT_STATUS: dict[str, Status | None] = {
    "Reported": Status.REPORTED,
    "Registered": Status.REGISTERED,
    "Rejected": Status.REJECTED,
    "Merged": Status.MERGED,
    "DuplicateLinked": None,
    "Dispatched": Status.DISPATCHED,
    "Reassigned": Status.DISPATCHED,
    "Accepted": Status.ACCEPTED,
    "Returned": Status.RETURNED,
    "ExtensionRequested": Status.EXTENSION_REQUESTED,
    "ExtensionGranted": Status.ACCEPTED,
    "ExtensionDenied": Status.ACCEPTED,
    "Suspended": Status.SUSPENDED,
    "Resumed": None,
    "HandlingReported": Status.HANDLED,
    "Verified": None,
    "Escalated": None,
    "DeadlineWarned": None,
    "Recategorised": None,
    "HandedOver": None,
    "CalledBack": None,
    "CallBackMissed": None,
    "Reopened": Status.REOPENED,
}
"""Where each work-order event leaves the case; None: it depends on the case or the event (see status_after)."""


def status_after(
    event_name: str,
    current: Status | None,
    suspended_from: Status | None = None,
    *,
    passed: bool | None = None,
    fixed: bool | None = None,
    stage: str | None = None,
) -> Status:
    """The status a case has after ``event_name``: the read side's copy of the aggregate's moves, as data."""
    target = EVENT_STATUS[event_name]
    if target is not None:
        return target
    if event_name == "Verified":
        return Status.CLOSED if passed else Status.REOPENED
    if event_name == "CalledBack":
        return Status.EVALUATED if fixed else Status.REOPENED
    if event_name == "HandedOver" and stage == HAND_OVER_PROCESSING:
        return Status.DISPATCHED
    if event_name == "Resumed":
        assert suspended_from is not None, "a case resumes only from suspension"
        return suspended_from
    assert current is not None, f"{event_name} does not move a case, so it needs the current status"
    return current


def status_after_event(event: Any, current: Status | None, suspended_from: Status | None = None) -> Status:
    """``status_after`` for a work-order event object: its name and the fields that decide where it leads."""
    return status_after(
        type(event).__name__, current, suspended_from,
        passed=getattr(event, "passed", None), fixed=getattr(event, "fixed", None),
        stage=getattr(event, "stage", None),
    )  # fmt: skip
