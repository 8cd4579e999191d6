"""The Avro codec: every event a real scenario records survives the wire, and bad bytes are refused by name."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from io import BytesIO
from pathlib import Path
from typing import Any, cast
from uuid import UUID

import pytest
from eventsourcing.domain import event
from fastavro import parse_schema, schemaless_writer
from hypothesis import given
from hypothesis import strategies as st

from engine import codec
from engine import commands as c
from engine.application import Gridloop
from engine.base import GridloopAggregate, recording_time
from engine.clock import ManualClock
from engine.codec import MAGIC, UndecodableRecord, decode, encode, event_classes, event_type, fingerprint_of
from engine.errors import UnknownReference
from schemas.registry import EventSchema, current_schema, full_schema, registry, schema_fingerprint

CST = timezone(timedelta(hours=8))  # 北京时间: the clock of the street
START = datetime(2026, 11, 23, 9, 0, tzinfo=CST)


class RecordingGridloop(Gridloop):
    """The real application, keeping each event it saves as the library handed it over."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.saved: list[Any] = []  # the library's events: attributes differ by type

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        recordings = super().save(*objs, **kwargs)
        self.saved.extend(r.domain_event for r in recordings)
        return recordings


def run_scenario(db: Path) -> RecordingGridloop:
    """A district, two grids, two workers, a patrol and eight cases taken through every step of the loop."""
    clock = ManualClock(START)
    app = RecordingGridloop({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(db)}, clock=clock)
    category, other_category = list(app.catalogue.categories)[:2]
    counter = iter(range(1000))

    def run(command_class: type[c.Command], **fields: Any) -> UUID:
        clock.advance(timedelta(minutes=7))
        fields.setdefault("actor", "dispatcher:01")
        return app.execute(command_class(command_id=f"cmd-{next(counter)}", **fields)).aggregate_id

    run(c.EstablishDivision, code="140827", division_name="垣曲县", level="district")
    run(c.EstablishDivision, code="140827100", division_name="新城镇", level="street", parent="140827")
    run(c.EstablishDivision, code="140827100001", division_name="东峰山社区", level="community", parent="140827100")
    polygon = '{"type":"Polygon","coordinates":[[[111.6,35.3],[111.7,35.3],[111.7,35.4],[111.6,35.3]]]}'
    for grid in ("140827100001001", "140827100001002"):
        run(
            c.DrawGrid,
            code=grid,
            grid_name=f"网格{grid[-1]}",
            community="140827100001",
            households=480,
            boundary=polygon,
        )
    run(c.RedrawGrid, code="140827100001001", households=530, boundary=polygon, reason="小区合并")
    for worker, name in (("W1", "张三"), ("W2", "李四")):
        run(
            c.EnrollWorker,
            code=worker,
            worker_name=name,
            role="grid_worker",
            unit="140827100001",
            grid="140827100001001",
            skills=["道路", "排水"],
        )
        run(c.SetDuty, worker=worker, on_duty=True)
    run(c.AssignStaff, grid="140827100001001", role="grid_worker", worker="W1")
    with recording_time(clock.now):  # no command retires a grid yet: drive the aggregate directly
        retired = app.grid("140827100001002")
        retired.retire(successors=["140827100001001"], reason="并入一号网格", occurred_at=clock.now())
        app.save(retired)

    patrol = run(c.StartPatrol, actor="W1", worker="W1", grid="140827100001001")
    late = clock.now() - timedelta(hours=3)  # uploaded from a phone three hours after the fact
    run(c.VisitCheckpoint, actor="W1", patrol_id=patrol, lon=111.65, lat=35.31, note="井盖松动", occurred_at=late)
    found = run(
        c.ReportFinding, actor="W1", patrol_id=patrol, category=category, description="井盖丢失", lon=111.65, lat=35.31
    )
    run(c.EndPatrol, actor="W1", patrol_id=patrol)

    report = {"source": "resident", "category": category, "grid": "140827100001001", "actor": "resident:13800000000"}
    duplicate = run(c.ReportCase, description="井盖没了", **report)
    run(c.MergeCase, case_id=duplicate, into_case=found)
    rejected = run(c.ReportCase, description="请盖个章", **report)
    run(
        c.RejectCase,
        case_id=rejected,
        reason_code="abolished_certificate",
        reason="该证明已取消",
        rule="证明事项清单: 亲属关系证明 取消",
    )
    # 事务准入: a department's task outside the admission catalogue is refused as it comes in, by the rule.
    run(
        c.ReportCase,
        actor="department:城管局",
        source="department",
        category=category,
        grid="140827100001001",
        description="请社区巡查占道经营",
        admission_item="I022",
    )
    returned = run(c.ReportCase, description="楼道堆物", reporter="王五", **report)
    run(c.RegisterCase, case_id=returned, note="属实")
    run(c.DispatchCase, case_id=returned, worker="W1", reason="网格员", deadline=clock.now() + timedelta(days=1))
    run(c.ReturnCase, actor="W1", case_id=returned, reason="不属本网格")

    # Located by its point (no grid given); its category corrected after registration (改类).
    case = run(
        c.ReportCase,
        source="resident",
        category=other_category,
        description="路灯不亮",
        lon=111.65,
        lat=35.31,
        actor="resident:13800000000",
    )
    run(c.RegisterCase, case_id=case)
    run(c.RecategoriseCase, case_id=case, category=category, reason="是路灯, 不是井盖")
    run(
        c.DispatchCase,
        case_id=case,
        worker="W1",
        reason="nearest on-duty worker",
        policy="nearest",
        policy_version="1.2",
        inputs={"distance_m": "120", "queue": "3"},
        deadline=clock.now() + timedelta(days=2),
    )
    run(c.ReassignCase, case_id=case, worker="W2", reason="W1 on leave")
    run(
        c.WarnDeadline,
        actor="policy:sla",
        case_id=case,
        step="accept",
        threshold=75,
        due=clock.now() + timedelta(hours=1),
        policy="sla",
        policy_version="1",
    )
    run(c.AcceptCase, actor="W2", case_id=case)
    run(c.RequestExtension, actor="W2", case_id=case, until=clock.now() + timedelta(days=5), reason="等配件")
    run(c.GrantExtension, case_id=case, note="同意")
    run(c.RequestExtension, actor="W2", case_id=case, until=clock.now() + timedelta(days=9), reason="再等")
    run(c.DenyExtension, case_id=case, reason="配件已到")
    run(c.SuspendCase, case_id=case, reason="电力施工")
    run(c.ResumeCase, case_id=case)
    run(c.EscalateCase, actor="supervisor:07", case_id=case, level=2, reason="超期")
    run(
        c.EscalateCase,
        actor="policy:ladder",
        case_id=case,
        level=3,
        reason="超期 4 个工作小时",
        policy="ladder",
        policy_version="1",
        inputs={"overdue_hours": "4"},
        due=clock.now() + timedelta(days=1),
    )
    run(c.ReportHandling, actor="W2", case_id=case, result="换了灯泡", photos=["oss://a.jpg", "oss://b.jpg"])
    run(c.VerifyCase, case_id=case, passed=False, note="仍不亮")
    run(c.DispatchCase, case_id=case, worker="W2", reason="返工")
    run(c.AcceptCase, actor="W2", case_id=case)
    run(c.ReportHandling, actor="W2", case_id=case, result="换了镇流器")
    run(c.VerifyCase, case_id=case, passed=True)
    run(c.MissCallBack, case_id=case, reason="no_answer")
    run(c.CallBack, case_id=case, satisfaction=4, fixed=True, note="基本满意")
    run(c.ReopenCase, actor="supervisor:07", case_id=case, reason="抽查不合格")

    # 全县通办: accepted where the resident lives, processed where registered, handed back to close.
    request = run(
        c.ReportCase,
        source="resident",
        category=category,
        grid="140827100001001",
        description="申请低保",
        service_item="TB01",
        registered_in="140827100001001",
        actor="resident:13900000000",
    )
    run(c.RegisterCase, case_id=request)
    run(c.HandOverCase, case_id=request, reason="户籍地办理")
    run(c.AcceptCase, actor="street:140827100", case_id=request)
    run(c.ReportHandling, actor="street:140827100", case_id=request, result="已审批")
    run(c.VerifyCase, case_id=request, passed=True)
    run(c.SetDuty, worker="W2", on_duty=False)
    return app


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> RecordingGridloop:
    return run_scenario(tmp_path_factory.mktemp("codec") / "gridloop.sqlite")


@pytest.fixture(scope="module")
def records(scenario: RecordingGridloop) -> list[bytes]:
    return [encode(e) for e in scenario.saved]


def stored_events(app: Gridloop) -> Iterator[Any]:
    start = 1
    while notifications := app.recorder.select_notifications(start, 100):
        for notification in notifications:
            yield app.mapper.to_domain_event(notification)
        start = notifications[-1].id + 1


def all_event_types() -> set[tuple[str, str]]:
    return {(folder, name) for aggregate, folder in codec.AGGREGATES.items() for name in event_classes(aggregate)}


# -- round trips ------------------------------------------------------------------------


def test_the_scenario_records_every_event_type_of_every_aggregate(scenario: RecordingGridloop) -> None:
    assert {event_type(e) for e in scenario.saved} == all_event_types()


def test_every_event_of_the_scenario_decodes_to_an_equal_event(scenario: RecordingGridloop) -> None:
    for original in scenario.saved:
        decoded = decode(encode(original))
        assert decoded == original
        assert type(decoded) is type(original)


def test_decoded_events_have_the_python_types_the_domain_uses(scenario: RecordingGridloop) -> None:
    by_type = {event_type(e): decode(encode(e)) for e in scenario.saved}
    reported: Any = next(e for e in scenario.saved if event_type(e) == ("workorder", "Reported") and e.patrol_id)
    reported = decode(encode(reported))
    assert isinstance(reported.originator_id, UUID)
    assert isinstance(reported.patrol_id, UUID)
    assert reported.timestamp.tzinfo is not None and reported.timestamp.utcoffset() == timedelta(0)
    assert reported.occurred_at.tzinfo is not None
    assert reported.originator_topic == "engine.work_order:WorkOrder"
    dispatched: Any = next(
        decode(encode(e)) for e in scenario.saved if event_type(e) == ("workorder", "Dispatched") and e.policy
    )
    assert dispatched.inputs == {"distance_m": "120", "queue": "3"}
    assert isinstance(dispatched.deadline, datetime)
    handled: Any = next(decode(encode(e)) for e in scenario.saved if event_type(e) == ("workorder", "HandlingReported"))
    assert handled.photos == ["oss://a.jpg", "oss://b.jpg"]
    receipt: Any = by_type[("command", "Received")]
    assert isinstance(receipt.aggregate_id, UUID)
    assert receipt.originator_topic == "engine.receipts:CommandReceipt"


def test_an_unlocated_report_keeps_its_missing_coordinates(scenario: RecordingGridloop) -> None:
    unlocated: Any = next(e for e in scenario.saved if event_type(e) == ("workorder", "Reported") and e.lon is None)
    decoded: Any = decode(encode(unlocated))
    assert (decoded.lon, decoded.lat, decoded.patrol_id) == (None, None, None)


def test_events_read_back_from_sqlite_encode_to_the_same_bytes(scenario: RecordingGridloop) -> None:
    stored = list(stored_events(scenario))
    assert len(stored) == len(scenario.saved)
    for original, read_back in zip(scenario.saved, stored, strict=True):
        assert read_back == original
        assert decode(encode(read_back)) == read_back
        assert encode(read_back) == encode(original)


def test_a_record_opens_with_the_magic_bytes_and_its_schema_fingerprint(scenario: RecordingGridloop) -> None:
    for e in scenario.saved:
        record = encode(e)
        assert record[:2] == b"\xc3\x01"
        assert record[2:10] == fingerprint_of(e) == current_schema(*event_type(e)).fingerprint


def test_a_hand_back_has_no_deadline_and_a_resumption_carries_the_moved_one(scenario: RecordingGridloop) -> None:
    handed: list[Any] = [decode(encode(e)) for e in scenario.saved if event_type(e) == ("workorder", "HandedOver")]
    assert [(e.stage, e.deadline is None) for e in handed] == [("processing", False), ("completing", True)]
    resumed: Any = next(decode(encode(e)) for e in scenario.saved if event_type(e) == ("workorder", "Resumed"))
    assert isinstance(resumed.deadline, datetime)


FIRST_RELEASE_CHANGED = {("workorder", name) for name in ("Escalated", "Rejected", "Reported", "Resumed")}
"""Event types whose schema gained fields (with defaults) since release 0.1.0."""


def test_a_record_written_with_the_first_release_decodes_with_todays_defaults(scenario: RecordingGridloop) -> None:
    """Kafka still holds records gridloop 0.1.0 wrote: the fields added since read as their defaults."""
    first = registry().released["0.1.0"]
    changed = {key for key, schema in first.items() if schema.fingerprint != current_schema(*key).fingerprint}
    assert changed == FIRST_RELEASE_CHANGED
    tried = set()
    for original in scenario.saved:
        key = event_type(original)
        if key not in changed:
            continue
        old = first[key]
        old_fields = [f["name"] for f in old.schema["fields"]]
        record = {name: getattr(original, name) for name in old_fields[3:]} | {
            "aggregate_id": original.originator_id,
            "aggregate_version": original.originator_version,
            "recorded_at": original.timestamp,
        }
        body = BytesIO()
        schemaless_writer(body, old.parsed, record)
        decoded: Any = decode(MAGIC + old.fingerprint + body.getvalue())
        assert type(decoded) is type(original)
        for name in old_fields[3:]:
            assert getattr(decoded, name) == getattr(original, name)
        added = [f for f in current_schema(*key).schema["fields"] if f["name"] not in old_fields]
        assert added
        assert {f["name"]: getattr(decoded, f["name"]) for f in added} == {f["name"]: f["default"] for f in added}
        tried.add(key)
    assert tried == changed


def written_by_an_older_schema(
    event: Any, older: dict[str, Any], monkeypatch: pytest.MonkeyPatch, **extra: Any
) -> bytes:
    """A record of ``event`` as a made-up older release would have written it, with that release registered."""
    fingerprint = schema_fingerprint(older)
    monkeypatch.setitem(
        cast(dict[bytes, EventSchema], registry().by_fingerprint),
        fingerprint,
        EventSchema("workorder", "Dispatched", "0.0.9", older, parse_schema(older), fingerprint),
    )
    record = {f["name"]: getattr(event, f["name"], None) for f in older["fields"][3:]} | extra
    record |= {
        "aggregate_id": event.originator_id,
        "aggregate_version": event.originator_version,
        "recorded_at": event.timestamp,
    }
    body = BytesIO()
    schemaless_writer(body, parse_schema(older), record)
    return MAGIC + fingerprint + body.getvalue()


def test_a_record_written_by_an_older_schema_is_read_with_todays(
    scenario: RecordingGridloop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The older release still had a field (since dropped): its records decode with the current schema."""
    dispatched = next(e for e in scenario.saved if event_type(e) == ("workorder", "Dispatched"))
    older = full_schema("workorder", "Dispatched")
    older["fields"].append({"name": "priority", "type": "long"})
    assert decode(written_by_an_older_schema(dispatched, older, monkeypatch, priority=1)) == dispatched


def test_an_older_record_that_todays_schema_cannot_resolve_is_refused_by_name(
    scenario: RecordingGridloop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The older release lacked a field that today's schema needs and gives no default for."""
    dispatched = next(e for e in scenario.saved if event_type(e) == ("workorder", "Dispatched"))
    older = full_schema("workorder", "Dispatched")
    older["fields"] = [f for f in older["fields"] if f["name"] != "inputs"]
    record = written_by_an_older_schema(dispatched, older, monkeypatch)
    with pytest.raises(UndecodableRecord, match=r"Dispatched record written with schema 0\.0\.9 cannot be read"):
        decode(record)


# -- what is refused, and how it is said -------------------------------------------------


def test_a_record_shorter_than_its_header_is_too_short() -> None:
    with pytest.raises(UndecodableRecord, match="too short: 3 bytes"):
        decode(b"\xc3\x01\x00")


def test_bad_magic_bytes_are_shown_next_to_the_expected_ones(records: Sequence[bytes]) -> None:
    with pytest.raises(UndecodableRecord, match="bad magic bytes 4F 62, expected C3 01"):
        decode(b"Ob" + records[0][2:])


def test_an_unknown_fingerprint_is_shown(records: Sequence[bytes]) -> None:
    with pytest.raises(UndecodableRecord, match="unknown schema fingerprint 0102030405060708"):
        decode(MAGIC + bytes(range(1, 9)) + records[0][10:])


def test_a_truncated_body_does_not_parse(records: Sequence[bytes]) -> None:
    with pytest.raises(UndecodableRecord, match="does not parse, truncated or corrupt"):
        decode(records[0][:-1])


def test_bytes_after_the_body_are_refused(records: Sequence[bytes]) -> None:
    with pytest.raises(UndecodableRecord, match="1 bytes left over"):
        decode(records[0] + b"\x00")


class Parcel(GridloopAggregate):
    """An aggregate that has no schema (a test double of a forgotten event type)."""

    @event("Weighed")
    def weigh(self, grams: int) -> None:
        self.grams = grams


def test_an_event_type_without_a_schema_is_an_unknown_reference() -> None:
    parcel = Parcel()
    parcel.weigh(grams=350)
    weighed: Any = parcel.collect_events()[-1]
    with pytest.raises(UnknownReference, match=r"unknown schema '[\w.]*:Parcel\.Weighed'"):
        encode(weighed)


@given(st.binary(max_size=300))
def test_random_bytes_are_undecodable(data: bytes) -> None:
    with pytest.raises(UndecodableRecord):
        decode(data)


@given(fingerprint=st.sampled_from(sorted(registry().by_fingerprint)), body=st.binary(max_size=300))
def test_random_bodies_behind_a_known_header_are_undecodable(fingerprint: bytes, body: bytes) -> None:
    with pytest.raises(UndecodableRecord):
        decode(MAGIC + fingerprint + body)


@given(data=st.data())
def test_every_truncation_of_a_valid_record_is_undecodable(records: Sequence[bytes], data: st.DataObject) -> None:
    record = data.draw(st.sampled_from(records))
    cut = data.draw(st.integers(min_value=0, max_value=len(record) - 1))
    with pytest.raises(UndecodableRecord):
        decode(record[:cut])


@given(data=st.data())
def test_a_corrupted_record_decodes_or_is_refused_nothing_else(records: Sequence[bytes], data: st.DataObject) -> None:
    record = bytearray(data.draw(st.sampled_from(records)))
    position = data.draw(st.integers(min_value=0, max_value=len(record) - 1))
    record[position] = data.draw(st.integers(min_value=0, max_value=255).filter(lambda b: b != record[position]))
    try:
        decoded = decode(bytes(record))
    except UndecodableRecord:
        return
    assert isinstance(decoded, GridloopAggregate.Event)
