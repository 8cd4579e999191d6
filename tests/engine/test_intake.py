"""Intake (受理): a report becomes a case, located by its point, refused by admission and certificate rules, routed
for 全县通办 — each through the real command path on a SQLite event store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine import commands as c
from engine.application import Gridloop
from engine.clock import ManualClock
from engine.errors import InvalidCommand, UnknownReference
from engine.intake import ADMISSION_POLICY
from engine.lifecycle import Status

T0 = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
DISTRICT = "140827"
EAST, WEST = "140827100", "140827200"  # two streets (街道/乡镇)
EAST_COMMUNITY, WEST_COMMUNITY = "140827100001", "140827200001"
EAST_GRID, WEST_GRID = "140827100001001", "140827200001001"
INSIDE_EAST, INSIDE_WEST = (111.62, 35.32), (111.68, 35.32)
"""Points inside each grid; the grids are two boxes with a gap between them (lon 111.65 to 111.66)."""


def box(west: float, east: float, south: float = 35.30, north: float = 35.35) -> str:
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return json.dumps({"type": "Polygon", "coordinates": [ring]})


def division(code: str, name: str, level: str, parent: str = "") -> c.EstablishDivision:
    return c.EstablishDivision(
        command_id=f"d-{code}", actor="admin", code=code, division_name=name, level=level, parent=parent
    )


def draw(code: str, community: str, boundary: str) -> c.DrawGrid:
    return c.DrawGrid(
        command_id=f"g-{code}",
        actor="admin",
        code=code,
        grid_name=code[-3:],
        community=community,
        households=300,
        boundary=boundary,
    )


DIVISIONS = [
    division(DISTRICT, "垣曲县", "district"),
    division(EAST, "新城镇", "street", DISTRICT),
    division(WEST, "历山镇", "street", DISTRICT),
    division(EAST_COMMUNITY, "东峰山社区", "community", EAST),
    division(WEST_COMMUNITY, "历山社区", "community", WEST),
]


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[Gridloop]:
    """An application with divisions but no grid drawn yet."""
    app = Gridloop(
        {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "events.sqlite")},
        clock=ManualClock(T0),
    )
    for command in DIVISIONS:
        app.execute(command)
    yield app
    app.close()


@pytest.fixture
def app(bare: Gridloop) -> Gridloop:
    """Two streets with one grid each."""
    bare.execute(draw(EAST_GRID, EAST_COMMUNITY, box(111.60, 111.65)))
    bare.execute(draw(WEST_GRID, WEST_COMMUNITY, box(111.66, 111.70)))
    return bare


def report(command_id: str = "r1", **overrides: Any) -> c.ReportCase:
    fields: dict[str, Any] = dict(
        command_id=command_id,
        actor="resident:1",
        source="resident",
        category="C0101",
        grid=EAST_GRID,
        description="井盖缺失",
    )
    fields.update(overrides)
    return c.ReportCase(**fields)


def department_task(command_id: str = "t1", **overrides: Any) -> c.ReportCase:
    """Work a department pushes onto the community (部门交办)."""
    fields: dict[str, Any] = dict(actor="城管局", source="department", category="S0101", description="请社区协助")
    return report(command_id, **(fields | overrides))


def log_length(app: Gridloop) -> int:
    return app.recorder.max_notification_id() or 0


def last_event(app: Gridloop, case_id: Any) -> Any:
    return list(app.repository.event_store.get(case_id))[-1]


# -- 事务准入: what a department may push onto a community ------------------------------------------


@pytest.mark.parametrize(
    ("item", "words"),
    [("I022", "占道经营巡查"), ("T016", "费随事转"), ("", "no item code given by 城管局")],
    ids=["outside the catalogue", "assisting but unfunded", "no item named"],
)
def test_a_department_task_the_admission_rules_refuse_is_recorded_as_refused_by_the_rule(
    app: Gridloop, item: str, words: str
) -> None:
    result = app.execute(department_task(admission_item=item))
    assert result.events == ("Reported", "Rejected")
    order = app.case(result.aggregate_id)
    assert order.status is Status.REJECTED and order.admission_item == item
    rejected = last_event(app, result.aggregate_id)
    decision = app.intake.admission.admit(item, department="城管局")
    assert (rejected.reason_code, rejected.rule, rejected.reason) == ("not_admitted", decision.rule, decision.reason)
    assert words in rejected.reason
    assert rejected.actor == f"policy:{ADMISSION_POLICY}/{app.intake.admission.name}" == "policy:admission/zhongshan"


def test_an_admitted_department_task_goes_on_to_registration(app: Gridloop) -> None:
    result = app.execute(department_task(admission_item="I001"))
    assert result.events == ("Reported",)
    order = app.case(result.aggregate_id)
    assert (order.status, order.admission_item) == (Status.REPORTED, "I001")


def test_a_department_report_of_a_professional_category_needs_no_admission_item(app: Gridloop) -> None:
    """Only work that lands on the grid (category handled by the grid worker) or names an item is checked."""
    result = app.execute(department_task(category="C0101"))
    assert result.events == ("Reported",)


def test_a_resident_request_in_a_grid_category_is_not_an_admission_matter(app: Gridloop) -> None:
    assert app.execute(report(category="S0101")).events == ("Reported",)


# -- 万能章治理: certificates a community was asked to stamp ------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason_code"), [("Z001", "abolished_certificate"), ("Z031", "out_of_scope")], ids=["abolished", "moved"]
)
def test_a_certificate_the_community_no_longer_stamps_is_closed_with_the_rule_and_the_alternative(
    app: Gridloop, code: str, reason_code: str
) -> None:
    certificate = app.intake.admission.certificate(code)
    result = app.execute(report(category="S0302", description="请开证明", certificate=code))
    assert result.events == ("Reported", "Rejected")
    assert app.case(result.aggregate_id).status is Status.REJECTED
    rejected = last_event(app, result.aggregate_id)
    assert (rejected.reason_code, rejected.rule) == (reason_code, certificate.rule)
    assert certificate.name in rejected.reason and certificate.alternative in rejected.reason
    assert rejected.actor == "policy:admission/zhongshan"


def test_a_retained_certificate_goes_on_as_an_ordinary_request(app: Gridloop) -> None:
    result = app.execute(report(category="S0302", description="请开居住证明", certificate="Z027"))
    assert result.events == ("Reported",)
    order = app.case(result.aggregate_id)
    assert (order.status, order.certificate) == (Status.REPORTED, "Z027")
    app.execute(c.RegisterCase(command_id="reg", actor="op1", case_id=result.aggregate_id))
    assert app.case(result.aggregate_id).status is Status.REGISTERED


UNKNOWN = [
    ("certificate", report(certificate="Z999"), UnknownReference, "unknown certificate 'Z999'; known: Z001"),
    (
        "service item",
        report(service_item="TB99", registered_in=EAST_GRID),
        UnknownReference,
        "unknown service item 'TB99'; known: TB01",
    ),
    ("registration grid", report(service_item="TB01", registered_in="nowhere"), UnknownReference, "unknown grid"),
    ("no registration", report(service_item="TB01"), InvalidCommand, "registered_in: is empty for a service item"),
]


@pytest.mark.parametrize(("what", "command", "error", "words"), UNKNOWN, ids=[u[0] for u in UNKNOWN])
def test_an_unknown_reference_in_a_report_is_a_clear_error_and_records_nothing(
    app: Gridloop, what: str, command: c.ReportCase, error: type[Exception], words: str
) -> None:
    before = log_length(app)
    with pytest.raises(error, match=words):
        app.execute(command)
    assert log_length(app) == before


# -- 全县通办: accepted where the resident lives, processed where registered ---------------------------


def test_a_tongban_request_is_accepted_where_the_resident_lives_and_processed_where_registered(app: Gridloop) -> None:
    street_item = app.execute(report("r1", category="S0303", service_item="TB01", registered_in=WEST_GRID))
    order = app.case(street_item.aggregate_id)
    assert (order.desk, order.processing_unit, order.service_item) == (EAST, WEST, "TB01")
    assert order.accountable == f"desk:{EAST}"
    community_item = app.execute(report("r2", category="S0303", service_item="TB06", registered_in=WEST_GRID))
    order = app.case(community_item.aggregate_id)
    assert (order.desk, order.processing_unit) == (EAST_COMMUNITY, WEST_COMMUNITY)


def test_an_ordinary_case_stays_with_the_district_desk(app: Gridloop) -> None:
    order = app.case(app.execute(report()).aggregate_id)
    assert (order.desk, order.processing_unit, order.service_item) == (DISTRICT, "", "")


# -- 定位到网格: a report without a grid is placed by its point ----------------------------------------


@pytest.mark.parametrize(("point", "grid"), [(INSIDE_EAST, EAST_GRID), (INSIDE_WEST, WEST_GRID)])
def test_a_report_without_a_grid_lands_in_the_grid_around_its_point(
    app: Gridloop, point: tuple[float, float], grid: str
) -> None:
    lon, lat = point
    order = app.case(app.execute(report(grid="", lon=lon, lat=lat)).aggregate_id)
    assert (order.grid, order.lon, order.lat) == (grid, lon, lat)


@pytest.mark.parametrize(
    ("point", "grid"), [((111.80, 35.32), WEST_GRID), ((111.50, 35.32), EAST_GRID), ((111.653, 35.32), EAST_GRID)]
)
def test_a_report_outside_every_grid_goes_to_the_nearest_grid(
    app: Gridloop, point: tuple[float, float], grid: str
) -> None:
    """属地兜底: where no grid is drawn, the nearest grid's people take it."""
    lon, lat = point
    assert app.case(app.execute(report(grid="", lon=lon, lat=lat)).aggregate_id).grid == grid


def test_a_given_grid_wins_over_the_point(app: Gridloop) -> None:
    lon, lat = INSIDE_WEST
    assert app.case(app.execute(report(grid=EAST_GRID, lon=lon, lat=lat)).aggregate_id).grid == EAST_GRID


def test_a_report_with_neither_grid_nor_location_is_refused_and_records_nothing(app: Gridloop) -> None:
    before = log_length(app)
    with pytest.raises(InvalidCommand, match="grid: is empty and the report has no location"):
        app.execute(report(grid=""))
    assert log_length(app) == before


def test_a_located_report_before_any_grid_is_drawn_is_refused(bare: Gridloop) -> None:
    before = log_length(bare)
    with pytest.raises(InvalidCommand, match="location: no grid has been drawn yet"):
        bare.execute(report(grid="", lon=111.62, lat=35.32))
    assert log_length(bare) == before


def test_locating_follows_grids_drawn_redrawn_and_retired_after_the_first_report(app: Gridloop) -> None:
    lon, lat = 111.652, 35.32  # in the gap, nearer the east grid
    assert app.case(app.execute(report("r1", grid="", lon=lon, lat=lat)).aggregate_id).grid == EAST_GRID
    app.execute(
        c.RedrawGrid(
            command_id="rd", actor="admin", code=WEST_GRID, households=300, boundary=box(111.65, 111.70), reason="扩大"
        )
    )
    assert app.case(app.execute(report("r2", grid="", lon=lon, lat=lat)).aggregate_id).grid == WEST_GRID
    app.execute(c.RetireGrid(command_id="rt", actor="admin", code=WEST_GRID, successors=[EAST_GRID], reason="并入"))
    west_lon, west_lat = INSIDE_WEST
    assert app.case(app.execute(report("r3", grid="", lon=west_lon, lat=west_lat)).aggregate_id).grid == EAST_GRID


def test_a_second_application_on_the_same_store_locates_by_the_grids_the_first_drew(app: Gridloop) -> None:
    other = Gridloop(dict(app.env), clock=ManualClock(T0))
    try:
        lon, lat = INSIDE_WEST
        assert other.case(other.execute(report(grid="", lon=lon, lat=lat)).aggregate_id).grid == WEST_GRID
    finally:
        other.close()
