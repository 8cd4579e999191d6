"""The reference model: divisions (district → street → community), grids and their staff, workers."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import event

from engine.base import GridloopAggregate, name_id
from engine.errors import IllegalTransition, InvalidCommand

LEVELS = ("city", "district", "street", "community")
"""Division levels above the grid: 市, 区/县, 街道/乡镇, 社区/村."""

ROLES = {
    "grid_leader": "网格长",
    "grid_worker": "网格员",
    "grid_assistant": "网格辅助员",
    "mediator": "调解员",
    "dispatcher": "派遣员",
    "department_staff": "部门处置人员",
}
"""Staff roles, with their Chinese names."""


class Division(GridloopAggregate):
    """An administrative division (市, 区/县, 街道, 社区) with a command point of its own."""

    @staticmethod
    def create_id(code: str, **_: object) -> UUID:
        return name_id("division", code)

    @event("Established")
    def __init__(self, *, code: str, name: str, level: str, parent: str, occurred_at: datetime) -> None:
        self.code = code
        self.name = name
        self.level = level
        self.parent = parent


class Grid(GridloopAggregate):
    """网格: the smallest unit of governance, owned by one grid worker (~300–500 households)."""

    @staticmethod
    def create_id(code: str, **_: object) -> UUID:
        return name_id("grid", code)

    @event("Drawn")
    def __init__(
        self,
        *,
        code: str,
        name: str,
        community: str,
        street: str,
        district: str,
        households: int,
        boundary: str,
        occurred_at: datetime,
    ) -> None:
        self.code = code
        self.name = name
        self.community = community
        self.street = street
        self.district = district
        self.households = households
        self.boundary = boundary
        self.staff: dict[str, list[str]] = {}
        self.retired = False

    def redraw(self, *, households: int, boundary: str, reason: str, occurred_at: datetime) -> None:
        """重新划分: a new boundary; cases reported in the old one stay attributed to this grid code."""
        self._require_active("redraw")
        if households <= 0:
            raise InvalidCommand("households", f"{households} is not a household count", "a positive number")
        self._redrawn(households=households, boundary=boundary, reason=reason, occurred_at=occurred_at)

    def assign_staff(self, *, role: str, worker: str, occurred_at: datetime) -> None:
        """Attach a worker to the grid in a role (网格长, 网格员, 网格辅助员, 调解员)."""
        self._require_active("assign_staff")
        if role not in ROLES:
            raise InvalidCommand("role", f"{role!r} is not a staff role", ", ".join(ROLES))
        if worker in self.staff.get(role, []):
            raise InvalidCommand("worker", f"{worker} is already {role} of grid {self.code}")
        self._staff_assigned(role=role, worker=worker, occurred_at=occurred_at)

    def retire(self, *, successors: list[str], reason: str, occurred_at: datetime) -> None:
        """The grid is replaced by others after a redraw; its history stays readable."""
        self._require_active("retire")
        self._retired(successors=list(successors), reason=reason, occurred_at=occurred_at)

    def _require_active(self, action: str) -> None:
        if self.retired:
            raise IllegalTransition("retired", action, ())

    @event("Redrawn")
    def _redrawn(self, households: int, boundary: str, reason: str, occurred_at: datetime) -> None:
        self.households = households
        self.boundary = boundary

    @event("StaffAssigned")
    def _staff_assigned(self, role: str, worker: str, occurred_at: datetime) -> None:
        self.staff.setdefault(role, []).append(worker)

    @event("Retired")
    def _retired(self, successors: list[str], reason: str, occurred_at: datetime) -> None:
        self.retired = True
        self.successors = successors


class Worker(GridloopAggregate):
    """A person who handles cases: a grid worker, an assistant, a mediator or department staff."""

    @staticmethod
    def create_id(code: str, **_: object) -> UUID:
        return name_id("worker", code)

    @event("Enrolled")
    def __init__(
        self,
        *,
        code: str,
        name: str,
        role: str,
        unit: str,
        grid: str,
        skills: list[str],
        occurred_at: datetime,
    ) -> None:
        self.code = code
        self.name = name
        self.role = role
        self.unit = unit
        self.grid = grid
        self.skills = skills
        self.on_duty = False

    def go_on_duty(self, *, occurred_at: datetime) -> None:
        """上岗."""
        if self.on_duty:
            raise IllegalTransition("on duty", "go_on_duty", ("go_off_duty",))
        self._on_duty(occurred_at=occurred_at)

    def go_off_duty(self, *, occurred_at: datetime) -> None:
        """下岗."""
        if not self.on_duty:
            raise IllegalTransition("off duty", "go_off_duty", ("go_on_duty",))
        self._off_duty(occurred_at=occurred_at)

    @event("WentOnDuty")
    def _on_duty(self, occurred_at: datetime) -> None:
        self.on_duty = True

    @event("WentOffDuty")
    def _off_duty(self, occurred_at: datetime) -> None:
        self.on_duty = False
