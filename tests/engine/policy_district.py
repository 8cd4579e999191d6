"""A two-grid community with staff, on a real SQLite store, for the dispatch policy and the supervisor."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from engine import commands as c
from engine.application import CommandResult, Gridloop
from engine.clock import ManualClock
from engine.policies import processes
from engine.process import Processes
from engine.working_time import WorkingCalendar
from ops.sample import COMMUNITY, DISTRICT, GRID, district_commands

CST = ZoneInfo("Asia/Shanghai")
MONDAY = datetime(2026, 11, 23, 9, 0, tzinfo=CST)  # a working Monday, 09:00
GRID2 = COMMUNITY + "002"
BOX2 = '{"type":"Polygon","coordinates":[[[111.7,35.3],[111.8,35.3],[111.8,35.4],[111.7,35.3]]]}'
GRID_WORK = "S0201"  # 独居老人探访: handled by the grid's own staff, no skill needed
MEDIATION = "S0101"  # 邻里纠纷: needs a mediator
DEPARTMENT_WORK = "E0101"  # 暴露垃圾: the catalogue's department (城管)


@dataclass
class District:
    """The app, its clock, the policies' runner and a counter for command ids."""

    app: Gridloop
    clock: ManualClock
    policies: Processes
    counter: list[int] = field(default_factory=lambda: [0])

    def run(self, command_class: type[c.Command], **fields: Any) -> CommandResult:
        self.counter[0] += 1
        fields.setdefault("actor", "desk:01")
        result = self.app.execute(command_class(command_id=f"t-{self.counter[0]}", **fields))
        self.policies.catch_up()
        return result

    def report_and_register(self, category: str = GRID_WORK, grid: str = GRID) -> UUID:
        case = self.run(
            c.ReportCase, source="resident", category=category, grid=grid, description="情况", actor="resident:1"
        ).aggregate_id
        self.run(c.RegisterCase, case_id=case)
        return case

    def duty(self, worker: str, on: bool) -> None:
        self.run(c.SetDuty, worker=worker, on_duty=on, actor="admin")

    def at(self, when: datetime) -> None:
        self.clock.set(when)
        self.policies.tick(when)

    def later(self, **delta: float) -> None:
        self.at(self.clock.now() + timedelta(**delta))


def build(path: Path, *, dispatch: str = "balanced", supervise: bool = True, start: datetime = MONDAY) -> District:
    """Grid 1: grid workers W1, W2, assistant A1 and mediator M1; grid 2: grid worker W3. All on duty."""
    clock = ManualClock(start - timedelta(hours=1))
    app = Gridloop(
        {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)},
        clock=clock,
        calendar=WorkingCalendar(),
    )
    district = District(app, clock, processes(app, dispatch=dispatch, supervise=supervise))
    for command in district_commands():
        app.execute(command)
    district.run(c.DrawGrid, code=GRID2, grid_name="东峰山2", community=COMMUNITY, households=480, boundary=BOX2)
    staff = (
        ("W1", "grid_worker", GRID, []),
        ("W2", "grid_worker", GRID, []),
        ("A1", "grid_assistant", GRID, []),
        ("M1", "mediator", GRID, ["mediation"]),
        ("W3", "grid_worker", GRID2, []),
    )
    for code, role, grid, skills in staff:
        district.run(
            c.EnrollWorker, code=code, worker_name=code, role=role, unit=COMMUNITY, grid=grid, skills=skills,
            actor="admin",
        )  # fmt: skip
        district.run(c.AssignStaff, grid=grid, role=role, worker=code, actor="admin")
        district.duty(code, True)
    clock.set(start)
    return district


__all__ = ["DISTRICT", "GRID", "GRID2", "MONDAY", "District", "build"]
