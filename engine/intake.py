"""Intake (受理): a report becomes a case: located, checked against admission and certificate rules, 通办 units set."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.utils import get_topic

from engine.admission import AdmissionCatalogue
from engine.base import name_id
from engine.catalogue import GRID
from engine.errors import InvalidCommand
from engine.geo import check_location
from engine.reference import Grid
from engine.routing import Area, GridLocator
from engine.tongban import ServiceItems, tongban_units
from engine.work_order import SOURCES, WorkOrder

if TYPE_CHECKING:
    from engine.application import Gridloop

ADMISSION_POLICY = "admission"
"""The actor prefix of refusals decided by the admission catalogue (事务准入) or the certificate list (万能章治理)."""

_GRID_TOPICS = tuple(get_topic(vars(Grid)[name]) for name in ("Drawn", "Redrawn", "Retired"))


@dataclass(frozen=True)
class Report:
    """What any report carries, whichever command brought it (a resident's request, a patrol's finding)."""

    command_id: str
    source: str
    category: str
    grid: str
    description: str
    reporter: str
    lon: float | None
    lat: float | None
    patrol_id: UUID | None
    actor: str
    service_item: str = ""
    registered_in: str = ""
    admission_item: str = ""
    certificate: str = ""


class Intake:
    """The front desk's rules for a new case (前台一口受理), on the application's event store."""

    def __init__(self, app: Gridloop, admission: AdmissionCatalogue, services: ServiceItems) -> None:
        self.app = app
        self.admission = admission
        self.services = services
        self._locator = GridLocator()
        self._located_up_to = 0

    def new_case(self, report: Report, occurred_at: datetime) -> WorkOrder:
        """The case a report opens: refused at once (and recorded so) when a rule says no."""
        if report.source not in SOURCES:
            raise InvalidCommand("source", f"{report.source!r} is not a case source", ", ".join(SOURCES))
        category = self.app.catalogue.category(report.category)
        check_location(report.lon, report.lat)
        if not report.description.strip():
            raise InvalidCommand("description", "is empty", "what was seen or asked, in words")
        grid = self.app.grid(self._grid_code(report))
        if grid.retired:
            raise InvalidCommand("grid", f"{grid.code} was retired by a redraw", "one of " + ", ".join(grid.successors))
        desk, processing_unit = grid.district, ""
        if report.service_item:
            desk, processing_unit = self._tongban(report, grid)
        certificate = self.admission.certificate(report.certificate) if report.certificate else None
        order = WorkOrder(
            id=name_id("case", report.command_id),
            source=report.source,
            category=category.code,
            grid=grid.code,
            desk=desk,
            description=report.description,
            reporter=report.reporter,
            lon=report.lon,
            lat=report.lat,
            patrol_id=report.patrol_id,
            occurred_at=occurred_at,
            actor=report.actor,
            service_item=report.service_item,
            processing_unit=processing_unit,
            admission_item=report.admission_item,
            certificate=report.certificate,
        )
        actor = f"policy:{ADMISSION_POLICY}/{self.admission.name}"
        if certificate is not None and certificate.status != "retained":
            # 万能章治理: an abolished certificate is answered with the rule and the case closed as such.
            code = "abolished_certificate" if certificate.status == "abolished" else "out_of_scope"
            reason = f"{certificate.name}: {certificate.status}" + (
                f"; {certificate.alternative}" if certificate.alternative else ""
            )
            order.reject(reason_code=code, reason=reason, rule=certificate.rule, occurred_at=occurred_at, actor=actor)
        elif report.source == "department" and (report.admission_item or category.department == GRID):
            # 事务准入: work a department pushes onto the community must be an admitted item.
            decision = self.admission.admit(report.admission_item, department=report.actor)
            if not decision.admitted:
                order.reject(
                    reason_code="not_admitted", reason=decision.reason, rule=decision.rule,
                    occurred_at=occurred_at, actor=actor,
                )  # fmt: skip
        return order

    def area(self, grid_code: str) -> Area:
        """A grid and the divisions above it."""
        grid = self.app.grid(grid_code)
        return Area(grid=grid.code, community=grid.community, street=grid.street, district=grid.district)

    def locate(self, lon: float, lat: float) -> str | None:
        """The grid containing a point, by the grid boundaries recorded so far; None outside every grid."""
        self._follow_grids()
        return self._locator.locate(lon, lat)

    def _grid_code(self, report: Report) -> str:
        return self.grid_of(report.grid, report.lon, report.lat)

    def grid_of(self, grid: str, lon: float | None, lat: float | None) -> str:
        """The grid a report lands in: the one it names, else the one containing (or nearest to) its location."""
        if grid:
            return grid
        if lon is None or lat is None:
            raise InvalidCommand("grid", "is empty and the report has no location", "a grid code, or lon and lat")
        located = self.locate(lon, lat)
        if located is None:
            # 属地兜底: outside every grid, the nearest grid's people take it.
            located = self._locator.nearest(lon, lat)
        if located is None:
            raise InvalidCommand("location", "no grid has been drawn yet", "a grid code")
        return located

    def _tongban(self, report: Report, grid: Grid) -> tuple[str, str]:
        """全县通办: accepted where the resident lives, processed where registered, completed where accepted."""
        item = self.services.item(report.service_item)
        if not report.registered_in:
            raise InvalidCommand("registered_in", "is empty for a service item", "the grid of the resident's 户籍地")
        residence = Area(grid=grid.code, community=grid.community, street=grid.street, district=grid.district)
        units = tongban_units(item, residence=residence, registered=self.area(report.registered_in))
        return units.accepting, units.processing

    def _follow_grids(self) -> None:
        recorder = self.app.recorder
        while True:
            notifications = recorder.select_notifications(self._located_up_to + 1, 1000, topics=_GRID_TOPICS)
            if not notifications:
                return
            for notification in notifications:
                event: Any = self.app.mapper.to_domain_event(notification)
                code = self.app.grid_code(event.originator_id)
                kind = type(event).__qualname__
                if kind == "Grid.Retired":
                    self._locator.retire(code)
                elif kind == "Grid.Redrawn":
                    self._locator.redraw(code, event.boundary)
                else:
                    self._locator.draw(code, event.boundary)
                self._located_up_to = notification.id
