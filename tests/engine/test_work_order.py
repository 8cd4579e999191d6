"""Every transition of the work-order lifecycle, allowed and refused, and the invariants over any sequence."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import IllegalTransition, InvalidCommand
from engine.lifecycle import (
    HAND_OVER_COMPLETING,
    HAND_OVER_PROCESSING,
    OPEN,
    RESUME_PREVIOUS,
    TRANSITIONS,
    UNCHANGED,
    Status,
    allowed_actions,
    status_after,
)
from engine.work_order import WARNINGS, WorkOrder

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
ACCEPTING, PROCESSING = "140827100", "140827200"
"""全县通办: the street where the resident lives (accepts, completes) and the one where registered (processes)."""


def new_case(*, tongban: bool = False) -> WorkOrder:
    """A manhole report, or (``tongban``) a 全县通办 request for social assistance (TB01)."""
    return WorkOrder(
        id=uuid4(),
        source="resident" if tongban else "patrol",
        category="S0303" if tongban else "C0101",
        grid="G1",
        desk=ACCEPTING if tongban else "140827",
        description="申请低保" if tongban else "manhole cover missing",
        reporter="W1",
        lon=111.67,
        lat=35.3,
        patrol_id=None,
        occurred_at=T0,
        actor="W1",
        service_item="TB01" if tongban else "",
        processing_unit=PROCESSING if tongban else "",
        admission_item="",
        certificate="",
    )


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def hand_over(order: WorkOrder) -> None:
    """通办流转 at the stage the state calls for: back to the completing unit once handled, else to processing."""
    if order.status is Status.HANDLED:
        order.hand_over(
            stage=HAND_OVER_COMPLETING, to_unit=order.desk, deadline=None, reason="办理结果转回受理地办结",
            occurred_at=at(65), actor="street-200",
        )  # fmt: skip
    else:
        order.hand_over(
            stage=HAND_OVER_PROCESSING, to_unit=order.processing_unit, deadline=at(600), reason="户籍地办理",
            occurred_at=at(10), actor="street-100",
        )  # fmt: skip


# One valid call of every action, so the tables below can try each of them everywhere.
ACTIONS: dict[str, Callable[[WorkOrder], None]] = {
    "register": lambda o: o.register(category="C0101", note="", occurred_at=at(5), actor="op1"),
    "reject": lambda o: o.reject(reason_code="duplicate", reason="same as #12", occurred_at=at(5), actor="op1"),
    "merge": lambda o: o.merge_into(target=new_case(), reason="same cover", occurred_at=at(5), actor="op1"),
    "dispatch": lambda o: o.dispatch(
        unit="chengguan",
        worker="W1",
        deadline=at(600),
        policy="",
        policy_version="",
        reason="grid worker of the grid",
        inputs={},
        occurred_at=at(10),
        actor="op1",
    ),
    "accept": lambda o: o.accept(occurred_at=at(20), actor=o.worker or "chengguan-staff"),
    "return": lambda o: o.return_(reason="not our street", occurred_at=at(25), actor="W1"),
    "reassign": lambda o: o.reassign(
        unit="housing",
        worker="",
        deadline=None,
        policy="",
        policy_version="",
        reason="needs a builder",
        inputs={},
        occurred_at=at(30),
        actor="op1",
    ),
    "request_extension": lambda o: o.request_extension(
        until=at(2000), reason="parts on order", occurred_at=at(40), actor="W1"
    ),
    "grant_extension": lambda o: o.grant_extension(note="ok", occurred_at=at(45), actor="lead1"),
    "deny_extension": lambda o: o.deny_extension(reason="do it today", occurred_at=at(45), actor="lead1"),
    "suspend": lambda o: o.suspend(reason="waiting for funds", occurred_at=at(50), actor="op1"),
    "resume": lambda o: o.resume(
        note="funds arrived",
        deadline=o.deadline and o.deadline + timedelta(minutes=5),  # moved by the time parked, as the app does
        occurred_at=at(55),
        actor="op1",
    ),
    "report_handling": lambda o: o.report_handling(
        result="cover replaced", photos=["a.jpg"], occurred_at=at(60), actor="W1"
    ),
    "verify": lambda o: o.verify(passed=True, note="", occurred_at=at(70), actor="inspector"),
    "escalate": lambda o: o.escalate(
        level=max(1, o.escalation_level), reason="overdue", occurred_at=at(80), actor="sup"
    ),
    "warn_deadline": lambda o: o.warn_deadline(
        step="handle", threshold=75, due=at(600), policy="sla", policy_version="1", occurred_at=at(82), actor="sup"
    ),
    "recategorise": lambda o: o.recategorise(
        category="C0102" if o.category == "C0101" else "C0101",
        reason="it is a rain grate",
        occurred_at=at(3),
        actor="op1",
    ),
    "hand_over": hand_over,
    "link_duplicate": lambda o: new_case().merge_into(target=o, reason="dup", occurred_at=at(85), actor="op1"),
    "call_back": lambda o: o.call_back(satisfaction=5, fixed=True, note="", occurred_at=at(90), actor="op1"),
    "miss_call_back": lambda o: o.miss_call_back(reason="no_answer", occurred_at=at(88), actor="op1"),
    "reopen": lambda o: o.reopen(reason="resident complained again", occurred_at=at(95), actor="op1"),
}

# How to bring a new case into each state.
PATHS: dict[Status, tuple[str, ...]] = {
    Status.REPORTED: (),
    Status.REGISTERED: ("register",),
    Status.REJECTED: ("reject",),
    Status.MERGED: ("merge",),
    Status.DISPATCHED: ("register", "dispatch"),
    Status.ACCEPTED: ("register", "dispatch", "accept"),
    Status.RETURNED: ("register", "dispatch", "return"),
    Status.EXTENSION_REQUESTED: ("register", "dispatch", "accept", "request_extension"),
    Status.SUSPENDED: ("register", "dispatch", "accept", "suspend"),
    Status.HANDLED: ("register", "dispatch", "accept", "report_handling"),
    Status.REOPENED: ("register", "dispatch", "accept", "report_handling", "reopen_by_rework"),
    Status.CLOSED: ("register", "dispatch", "accept", "report_handling", "verify"),
    Status.EVALUATED: ("register", "dispatch", "accept", "report_handling", "verify", "call_back"),
}


def case_in(status: Status, *, tongban: bool = False) -> WorkOrder:
    """A case brought into ``status``; a 全县通办 request goes to its processing unit and is handed back."""
    order = new_case(tongban=tongban)
    for step in PATHS[status]:
        if tongban and step == "dispatch":
            step = "hand_over"
        if tongban and step in ("verify", "reopen_by_rework"):
            hand_over(order)  # only the completing unit verifies, after the hand-back
        if step == "reopen_by_rework":
            order.verify(passed=False, note="still broken", occurred_at=at(70), actor="inspector")
        else:
            ACTIONS[step](order)
    assert order.status is status
    return order


def test_every_action_and_every_state_is_covered_by_the_tables() -> None:
    assert set(ACTIONS) == set(TRANSITIONS)
    assert set(PATHS) == set(Status)


@pytest.mark.parametrize("status", list(Status), ids=str)
@pytest.mark.parametrize("action", list(TRANSITIONS), ids=str)
def test_each_action_is_allowed_exactly_where_the_table_says(status: Status, action: str) -> None:
    """Hand-overs exist only for 全县通办 requests: that column is tried on one, handled meaning not yet handed back."""
    order = case_in(status, tongban=action == "hand_over")
    transition = TRANSITIONS[action]
    if status in transition.sources:
        ACTIONS[action](order)
        possible = {t for t in transition.targets if isinstance(t, Status)}
        if RESUME_PREVIOUS in transition.targets or UNCHANGED in transition.targets:
            possible |= set(Status)
        assert order.status in possible
    else:
        version = order.version
        with pytest.raises(IllegalTransition) as refused:
            ACTIONS[action](order)
        assert refused.value.state == status.value
        assert refused.value.allowed == tuple(sorted(allowed_actions(status)))
        assert status.value in str(refused.value)
        assert order.version == version  # nothing recorded


def test_a_refusal_names_the_state_and_the_allowed_actions() -> None:
    order = case_in(Status.DISPATCHED)
    with pytest.raises(
        IllegalTransition, match="cannot verify a case that is dispatched; allowed from dispatched: accept"
    ):
        order.verify(passed=True, note="", occurred_at=at(70), actor="inspector")


def test_a_returned_case_goes_back_to_the_dispatch_desk() -> None:
    order = case_in(Status.RETURNED)
    assert order.accountable == "desk:140827"
    assert (order.unit, order.worker) == ("", "")


def test_a_dispatched_case_is_owned_by_its_worker_and_a_unit_dispatch_by_the_unit() -> None:
    assert case_in(Status.DISPATCHED).accountable == "worker:W1"
    order = case_in(Status.DISPATCHED)
    ACTIONS["reassign"](order)
    assert order.accountable == "unit:housing"


def test_a_suspended_case_stays_with_whoever_held_it_and_resumes_where_it_stood() -> None:
    order = case_in(Status.SUSPENDED)
    assert order.accountable == "worker:W1"
    ACTIONS["resume"](order)
    assert order.status is Status.ACCEPTED


def test_a_failed_verification_sends_the_case_back_for_rework() -> None:
    order = case_in(Status.REOPENED)
    assert order.rework_count == 1
    assert order.accountable == "desk:140827"
    ACTIONS["dispatch"](order)
    assert order.status is Status.DISPATCHED


def test_a_call_back_saying_not_fixed_reopens_the_case() -> None:
    order = case_in(Status.CLOSED)
    order.call_back(satisfaction=2, fixed=False, note="still broken", occurred_at=at(90), actor="op1")
    assert order.status is Status.REOPENED


def test_a_granted_extension_moves_the_deadline() -> None:
    order = case_in(Status.EXTENSION_REQUESTED)
    ACTIONS["grant_extension"](order)
    assert order.deadline == at(2000)
    assert order.status is Status.ACCEPTED


def test_merging_links_the_duplicate_to_the_surviving_case() -> None:
    duplicate, survivor = new_case(), case_in(Status.REGISTERED)
    duplicate.merge_into(target=survivor, reason="same cover", occurred_at=at(5), actor="op1")
    assert duplicate.merged_into == survivor.id
    assert survivor.duplicates == [duplicate.id]
    with pytest.raises(InvalidCommand, match="into itself"):
        survivor.merge_into(target=survivor, reason="x", occurred_at=at(6), actor="op1")


@pytest.mark.parametrize(
    ("act", "field"),
    [
        (lambda o: o.escalate(level=6, reason="x", occurred_at=at(1), actor="s"), "level"),
        (lambda o: o.reject(reason_code="boring", reason="x", occurred_at=at(1), actor="s"), "reason_code"),
        (lambda o: o.reject(reason_code="duplicate", reason=" ", occurred_at=at(1), actor="s"), "reason"),
    ],
)
def test_malformed_arguments_are_refused_and_record_nothing(act: Callable[[WorkOrder], None], field: str) -> None:
    order = new_case()
    with pytest.raises(InvalidCommand) as refused:
        act(order)
    assert refused.value.field == field
    assert order.version == 1


def test_a_dispatch_needs_someone_a_future_deadline_and_a_reason() -> None:
    order = case_in(Status.REGISTERED)
    kwargs = dict(
        unit="",
        worker="",
        deadline=at(600),
        policy="",
        policy_version="",
        reason="r",
        inputs={},
        occurred_at=at(10),
        actor="op1",
    )
    with pytest.raises(InvalidCommand, match="neither a unit nor a worker"):
        order.dispatch(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidCommand, match="deadline"):
        order.dispatch(**{**kwargs, "unit": "chengguan", "deadline": at(0)})  # type: ignore[arg-type]
    with pytest.raises(InvalidCommand, match="policy_version"):
        order.dispatch(**{**kwargs, "unit": "chengguan", "policy": "nearest-worker"})  # type: ignore[arg-type]


def test_only_the_assigned_worker_signs_for_a_case() -> None:
    order = case_in(Status.DISPATCHED)
    with pytest.raises(InvalidCommand, match="cannot sign for"):
        order.accept(occurred_at=at(20), actor="W2")


# -- 全县通办: accepted where the resident lives, processed where registered, completed where accepted --------


def test_a_tongban_request_is_handed_to_its_processing_unit_with_a_deadline() -> None:
    order = case_in(Status.REGISTERED, tongban=True)
    assert order.accountable == f"desk:{ACCEPTING}"
    hand_over(order)
    assert order.status is Status.DISPATCHED
    assert (order.unit, order.worker, order.deadline) == (PROCESSING, "", at(600))
    assert order.accountable == f"unit:{PROCESSING}"
    handed: Any = order.collect_events()[-1]
    assert (type(handed).__name__, handed.stage, handed.from_unit, handed.to_unit) == (
        "HandedOver",
        HAND_OVER_PROCESSING,
        ACCEPTING,
        PROCESSING,
    )


def test_only_the_completing_unit_closes_a_tongban_request_after_the_hand_back() -> None:
    order = case_in(Status.HANDLED, tongban=True)
    assert not order.handed_back
    with pytest.raises(IllegalTransition, match="cannot verify a case that is handled, not yet handed back"):
        order.verify(passed=True, note="", occurred_at=at(70), actor="inspector")
    with pytest.raises(InvalidCommand, match=f"to_unit: '{PROCESSING}' is not the completing unit"):
        order.hand_over(
            stage=HAND_OVER_COMPLETING, to_unit=PROCESSING, deadline=None, reason="r", occurred_at=at(65), actor="s"
        )
    hand_over(order)
    handed: Any = order.collect_events()[-1]
    assert (handed.stage, handed.from_unit, handed.to_unit) == (HAND_OVER_COMPLETING, PROCESSING, ACCEPTING)
    assert order.status is Status.HANDLED and order.handed_back
    assert order.accountable == f"desk:{ACCEPTING}"
    with pytest.raises(IllegalTransition, match="cannot hand_over to completing a case that is handled"):
        hand_over(order)  # handed back once only
    order.verify(passed=True, note="", occurred_at=at(70), actor="desk-100")
    assert order.status is Status.CLOSED


def test_a_handled_tongban_request_is_not_handed_to_processing_again() -> None:
    order = case_in(Status.HANDLED, tongban=True)
    with pytest.raises(IllegalTransition, match="allowed from handled: hand_over to completing"):
        order.hand_over(
            stage=HAND_OVER_PROCESSING, to_unit=PROCESSING, deadline=at(900), reason="r", occurred_at=at(65), actor="s"
        )


def test_rework_of_a_tongban_request_goes_back_to_the_processing_unit_and_needs_a_new_hand_back() -> None:
    order = case_in(Status.REOPENED, tongban=True)
    assert not order.handed_back and order.accountable == f"desk:{ACCEPTING}"
    hand_over(order)
    assert order.status is Status.DISPATCHED and order.unit == PROCESSING
    ACTIONS["accept"](order)
    ACTIONS["report_handling"](order)
    with pytest.raises(IllegalTransition, match="not yet handed back"):
        order.verify(passed=True, note="", occurred_at=at(70), actor="inspector")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"to_unit": "140827300"}, "to_unit"),
        ({"deadline": None}, "deadline"),
        ({"deadline": at(10)}, "deadline"),
        ({"reason": " "}, "reason"),
        ({"stage": "sideways"}, "stage"),
    ],
)
def test_a_malformed_hand_over_is_refused_and_records_nothing(change: dict[str, Any], field: str) -> None:
    order = case_in(Status.REGISTERED, tongban=True)
    version = order.version
    fields: dict[str, Any] = dict(
        stage=HAND_OVER_PROCESSING, to_unit=PROCESSING, deadline=at(600), reason="户籍地办理", occurred_at=at(10),
        actor="s",
    )  # fmt: skip
    with pytest.raises(InvalidCommand) as refused:
        order.hand_over(**{**fields, **change})
    assert refused.value.field == field
    assert order.version == version


def test_an_ordinary_case_is_not_handed_over() -> None:
    order = case_in(Status.REGISTERED)
    with pytest.raises(InvalidCommand, match="is not a 全县通办 service request"):
        order.hand_over(
            stage=HAND_OVER_PROCESSING, to_unit="", deadline=at(600), reason="r", occurred_at=at(10), actor="s"
        )


# -- 改类, 预警, 恢复, 督办 by a policy ------------------------------------------------------------


def test_a_recategorised_case_keeps_its_place_and_records_the_previous_category() -> None:
    order = case_in(Status.DISPATCHED)
    order.recategorise(category="C0104", reason="it is a rain grate", occurred_at=at(15), actor="op1")
    assert (order.category, order.status, order.accountable) == ("C0104", Status.DISPATCHED, "worker:W1")
    recategorised: Any = order.collect_events()[-1]
    assert (recategorised.category, recategorised.previous) == ("C0104", "C0101")
    with pytest.raises(InvalidCommand, match="category: the case is already C0104"):
        order.recategorise(category="C0104", reason="again", occurred_at=at(16), actor="op1")
    with pytest.raises(InvalidCommand, match="reason: is empty"):
        order.recategorise(category="C0101", reason="", occurred_at=at(16), actor="op1")
    with pytest.raises(IllegalTransition, match="cannot recategorise a case that is closed"):
        case_in(Status.CLOSED).recategorise(category="C0104", reason="x", occurred_at=at(80), actor="op1")


@pytest.mark.parametrize(("threshold", "light"), sorted(WARNINGS.items()))
def test_a_deadline_warning_sets_its_light_and_leaves_the_case_where_it_is(threshold: int, light: str) -> None:
    order = case_in(Status.ACCEPTED)
    order.warn_deadline(
        step="handle", threshold=threshold, due=at(600), policy="sla", policy_version="2", occurred_at=at(30),
        actor="policy:sla",
    )  # fmt: skip
    warned: Any = order.collect_events()[-1]
    assert (type(warned).__name__, warned.light, warned.due, warned.policy_version) == (
        "DeadlineWarned",
        light,
        at(600),
        "2",
    )
    assert order.status is Status.ACCEPTED and order.accountable == "worker:W1"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"step": "lunch"}, "step"),
        ({"threshold": 60}, "threshold"),
        ({"policy": ""}, "policy"),
        ({"policy_version": ""}, "policy"),
    ],
)
def test_a_malformed_deadline_warning_is_refused_and_records_nothing(change: dict[str, Any], field: str) -> None:
    order = case_in(Status.DISPATCHED)
    version = order.version
    fields: dict[str, Any] = dict(
        step="accept", threshold=50, due=at(600), policy="sla", policy_version="2", occurred_at=at(30), actor="s"
    )
    with pytest.raises(InvalidCommand) as refused:
        order.warn_deadline(**{**fields, **change})
    assert refused.value.field == field
    assert order.version == version


def test_a_resumed_case_takes_the_deadline_it_is_given_but_never_an_earlier_one() -> None:
    order = case_in(Status.SUSPENDED)
    parked_at = order.suspended_at
    assert parked_at == at(50)
    with pytest.raises(InvalidCommand, match="cannot shorten the deadline"):
        order.resume(note="x", deadline=at(599), occurred_at=at(55), actor="op1")
    order.resume(note="funds arrived", deadline=at(605), occurred_at=at(55), actor="op1")
    assert (order.status, order.deadline, order.suspended_at) == (Status.ACCEPTED, at(605), None)
    resumed: Any = order.collect_events()[-1]
    assert resumed.deadline == at(605)


def test_a_resumption_without_a_new_deadline_keeps_the_old_one() -> None:
    order = case_in(Status.SUSPENDED)
    order.resume(note="funds arrived", occurred_at=at(55), actor="op1")
    assert order.deadline == at(600)


def test_a_policy_escalation_names_its_version_inputs_and_the_rungs_deadline() -> None:
    order = case_in(Status.ACCEPTED)
    with pytest.raises(InvalidCommand, match="policy_version"):
        order.escalate(level=2, reason="overdue", policy="ladder", occurred_at=at(80), actor="policy:ladder")
    order.escalate(
        level=2, reason="overdue", policy="ladder", policy_version="1", inputs={"overdue_hours": "4"}, due=at(900),
        occurred_at=at(80), actor="policy:ladder",
    )  # fmt: skip
    escalated: Any = order.collect_events()[-1]
    assert (escalated.policy, escalated.inputs, escalated.due) == ("ladder", {"overdue_hours": "4"}, at(900))
    assert order.escalation_level == 2


def test_a_rejection_cites_the_rule_that_decided_it() -> None:
    order = new_case()
    order.reject(
        reason_code="abolished_certificate", reason="亲属关系证明: abolished", rule="证明事项清单 Z001: 取消",
        occurred_at=at(1), actor="policy:admission/zhongshan",
    )  # fmt: skip
    rejected: Any = order.collect_events()[-1]
    assert (order.status, rejected.rule) == (Status.REJECTED, "证明事项清单 Z001: 取消")


def expected_accountable(order: WorkOrder) -> str | None:
    status = order.suspended_from if order.status is Status.SUSPENDED else order.status
    if order.status not in OPEN:
        return None
    if status in (Status.DISPATCHED, Status.ACCEPTED, Status.EXTENSION_REQUESTED):
        return f"worker:{order.worker}" if order.worker else f"unit:{order.unit}"
    return f"desk:{order.desk}"


STEPS = st.sampled_from([*sorted(TRANSITIONS), "fail_verification", "not_fixed"])
OUTCOMES: dict[Status, tuple[str, ...]] = {Status.HANDLED: ("fail_verification",), Status.CLOSED: ("not_fixed",)}
"""The other outcome of the actions that can go two ways (verify, call_back)."""


def next_step(data: st.DataObject, order: WorkOrder) -> str:
    """Mostly a step that moves the case on (so a walk reaches handled, closed, hand-backs), else any step."""
    allowed = (*allowed_actions(order.status), *OUTCOMES.get(order.status, ()))
    moving = [
        a
        for a in allowed
        if a in OUTCOMES.get(order.status, ())
        or (a not in ("reject", "merge") and TRANSITIONS[a].targets != (UNCHANGED,))
    ]
    choice = data.draw(st.integers(0, 5))
    if choice >= 2 and moving:
        return data.draw(st.sampled_from(moving))
    if choice == 1 and allowed:
        return data.draw(st.sampled_from(allowed))
    return data.draw(STEPS)


def try_step(order: WorkOrder, step: str) -> None:
    """One random step; a refusal is part of the game (the invariants must hold either way)."""
    try:
        if step == "fail_verification":
            order.verify(passed=False, note="still broken", occurred_at=at(70), actor="inspector")
        elif step == "not_fixed":
            order.call_back(satisfaction=1, fixed=False, note="no", occurred_at=at(90), actor="op1")
        else:
            ACTIONS[step](order)
    except (IllegalTransition, InvalidCommand):
        pass


@settings(max_examples=300, deadline=None)
@given(st.booleans(), st.integers(0, 40), st.data())
def test_any_sequence_of_commands_keeps_the_invariants(tongban: bool, length: int, data: st.DataObject) -> None:
    order = new_case(tongban=tongban)
    for _ in range(length):
        before, handed_back, deadline = order.status, order.handed_back, order.deadline
        try_step(order, next_step(data, order))
        # 事事有人办: exactly one accountable party while open, none after.
        assert order.accountable == expected_accountable(order)
        assert (order.accountable is not None) == (order.status in OPEN)
        # 受理地办结: a 全县通办 request is closed by the completing unit only after the hand-back.
        if order.service_item and before is Status.HANDLED and order.status is not Status.HANDLED:
            assert handed_back
        # A resumption never shortens the deadline.
        if before is Status.SUSPENDED and order.status is not Status.SUSPENDED and deadline is not None:
            assert order.deadline is not None and order.deadline >= deadline
        if order.status is Status.CLOSED:
            for action in set(ACTIONS) - {"call_back", "miss_call_back", "reopen"}:
                # A hand-over is refused for what the case is (not a 通办 request) before where it stands.
                refusal = InvalidCommand if action == "hand_over" and not tongban else IllegalTransition
                with pytest.raises(refusal):
                    ACTIONS[action](copy.deepcopy(order))
    # The events alone rebuild the same case.
    events = order.collect_events()
    replayed: WorkOrder | None = None
    for e in events:
        replayed = e.mutate(replayed)
    assert replayed is not None
    assert replayed.__dict__ == order.__dict__


@settings(max_examples=200, deadline=None)
@given(st.booleans(), st.integers(0, 30), st.data())
def test_the_read_side_status_table_agrees_with_the_aggregate_after_every_event(
    tongban: bool, length: int, data: st.DataObject
) -> None:
    order = new_case(tongban=tongban)
    for _ in range(length):
        try_step(order, next_step(data, order))
    status: Status | None = None
    suspended_from: Status | None = None
    replayed: WorkOrder | None = None
    for e in order.collect_events():
        if e.originator_id != order.id:
            continue
        name = type(e).__name__
        after = status_after(
            name,
            status,
            suspended_from,
            passed=getattr(e, "passed", None),
            fixed=getattr(e, "fixed", None),
            stage=getattr(e, "stage", None),
        )
        suspended_from = status if name == "Suspended" else (None if name == "Resumed" else suspended_from)
        status = after
        replayed = e.mutate(replayed)
        assert replayed is not None and replayed.status is status
    assert status is order.status
