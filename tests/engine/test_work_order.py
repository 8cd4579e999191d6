"""Every transition of the work-order lifecycle, allowed and refused, and the invariants over any sequence."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import IllegalTransition, InvalidCommand
from engine.lifecycle import OPEN, RESUME_PREVIOUS, TRANSITIONS, UNCHANGED, Status, allowed_actions, status_after
from engine.work_order import WorkOrder

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)


def new_case() -> WorkOrder:
    return WorkOrder(
        id=uuid4(),
        source="patrol",
        category="C0101",
        grid="G1",
        desk="140827",
        description="manhole cover missing",
        reporter="W1",
        lon=111.67,
        lat=35.3,
        patrol_id=None,
        occurred_at=T0,
        actor="W1",
    )


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


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
    "resume": lambda o: o.resume(note="funds arrived", occurred_at=at(55), actor="op1"),
    "report_handling": lambda o: o.report_handling(
        result="cover replaced", photos=["a.jpg"], occurred_at=at(60), actor="W1"
    ),
    "verify": lambda o: o.verify(passed=True, note="", occurred_at=at(70), actor="inspector"),
    "escalate": lambda o: o.escalate(
        level=max(1, o.escalation_level), reason="overdue", occurred_at=at(80), actor="sup"
    ),
    "link_duplicate": lambda o: new_case().merge_into(target=o, reason="dup", occurred_at=at(85), actor="op1"),
    "call_back": lambda o: o.call_back(satisfaction=5, fixed=True, note="", occurred_at=at(90), actor="op1"),
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


def case_in(status: Status) -> WorkOrder:
    order = new_case()
    for step in PATHS[status]:
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
    order = case_in(status)
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


def expected_accountable(order: WorkOrder) -> str | None:
    status = order.suspended_from if order.status is Status.SUSPENDED else order.status
    if order.status not in OPEN:
        return None
    if status in (Status.DISPATCHED, Status.ACCEPTED, Status.EXTENSION_REQUESTED):
        return f"worker:{order.worker}" if order.worker else f"unit:{order.unit}"
    return "desk:140827"


STEPS = st.sampled_from([*sorted(TRANSITIONS), "fail_verification", "not_fixed"])


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
@given(st.lists(STEPS, max_size=40))
def test_any_sequence_of_commands_keeps_the_invariants(steps: list[str]) -> None:
    order = new_case()
    for step in steps:
        try_step(order, step)
        # 事事有人办: exactly one accountable party while open, none after.
        assert order.accountable == expected_accountable(order)
        assert (order.accountable is not None) == (order.status in OPEN)
        if order.status is Status.CLOSED:
            for action in set(ACTIONS) - {"call_back", "reopen"}:
                with pytest.raises(IllegalTransition):
                    ACTIONS[action](copy.deepcopy(order))
    # The events alone rebuild the same case.
    events = order.collect_events()
    replayed: WorkOrder | None = None
    for e in events:
        replayed = e.mutate(replayed)  # type: ignore[assignment]
    assert replayed is not None
    assert replayed.__dict__ == order.__dict__


@settings(max_examples=200, deadline=None)
@given(st.lists(STEPS, max_size=30))
def test_the_read_side_status_table_agrees_with_the_aggregate_after_every_event(steps: list[str]) -> None:
    order = new_case()
    for step in steps:
        try_step(order, step)
    status: Status | None = None
    suspended_from: Status | None = None
    replayed: WorkOrder | None = None
    for e in order.collect_events():
        if e.originator_id != order.id:
            continue
        name = type(e).__name__
        after = status_after(
            name, status, suspended_from, passed=getattr(e, "passed", None), fixed=getattr(e, "fixed", None)
        )
        suspended_from = status if name == "Suspended" else (None if name == "Resumed" else suspended_from)
        status = after
        replayed = e.mutate(replayed)  # type: ignore[assignment]
        assert replayed is not None and replayed.status is status
    assert status is order.status
