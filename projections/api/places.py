"""Where a command acts: the grid or division it touches and the nodes of the five-level tree above it."""

from __future__ import annotations

from engine import commands as c
from engine.application import Gridloop
from engine.errors import UnknownReference
from projections.api.access import Principal, Role
from projections.api.problems import AccessDenied

TOP_LEVELS = ("city", "district")
"""A command that names no grid (department staff, a city's division) needs a principal at one of these levels."""


class Places:
    """The five-level tree as the write side knows it, for deciding whether a command is inside a jurisdiction.

    Read from the event store, not from the views, so a case reported a moment ago is already placed.
    A grid's or division's place in the tree never changes (a redraw keeps the code and the parents), so
    the places of the codes the tree holds are kept for the life of the process; a code it does not hold
    is looked up again next time (it may be drawn a moment later).
    """

    def __init__(self, app: Gridloop) -> None:
        self.app = app
        self._chains: dict[str, tuple[str, ...]] = {}

    def above(self, code: str) -> tuple[str, ...]:
        """``code`` and every node above it, nearest first (grid, community, street, district, city)."""
        chain = self._chains.get(code)
        if chain is None:
            chain = self._lookup(code)
            if len(chain) > 1 or self.level(code):
                self._chains[code] = chain
        return chain

    def known(self, code: str) -> bool:
        """Whether the tree holds ``code`` (a division or a grid)."""
        self.above(code)
        return code in self._chains

    def level(self, code: str) -> str:
        """The level of a division code (city, district, street, community), or grid; '' when unknown."""
        try:
            return self.app.division(code).level
        except UnknownReference:
            pass
        try:
            self.app.grid(code)
        except UnknownReference:
            return ""
        return "grid"

    def _lookup(self, code: str) -> tuple[str, ...]:
        try:
            grid = self.app.grid(code)
        except UnknownReference:
            chain: list[str] = []
            node = code
        else:
            chain = [grid.code, grid.community, grid.street]
            node = grid.district
        # Divisions name their parent; a loop in the tree (a corrupted log) stops at the first repeat.
        while node and node not in chain:
            chain.append(node)
            try:
                node = self.app.division(node).parent
            except UnknownReference:
                break
        return tuple(chain)


def place_of(app: Gridloop, command: c.Command) -> str:
    """The grid (or division) a command acts in; '' when it names none (department staff without a grid)."""
    if isinstance(command, c.CaseCommand):
        return app.case(command.case_id).grid
    if isinstance(command, c.ReportCase):
        return app.intake.grid_of(command.grid, command.lon, command.lat)
    if isinstance(command, c.VisitCheckpoint | c.ReportFinding | c.EndPatrol):
        return app.patrol(command.patrol_id).grid
    if isinstance(command, c.StartPatrol | c.AssignStaff):
        return command.grid
    if isinstance(command, c.SetDuty):
        return app.worker(command.worker).grid
    if isinstance(command, c.EnrollWorker):
        return command.grid
    if isinstance(command, c.DrawGrid):
        return command.community
    if isinstance(command, c.RedrawGrid | c.RetireGrid):
        return command.code
    if isinstance(command, c.EstablishDivision):
        return command.parent or command.code
    return ""


def check_command(places: Places, principal: Principal, command: c.Command) -> None:
    """Refuse (AccessDenied) a command outside the principal's role, jurisdiction or assignment."""
    if not principal.may_issue(command.name):
        raise AccessDenied(f"role {principal.role.value} may not {command.name}", principal.commands())
    app = places.app
    if principal.assigned_only:
        _check_assignment(app, principal, command)
    place = place_of(app, command)
    if place and not places.known(place) and not isinstance(command, c.EstablishDivision):
        # A code the tree does not hold is unknown, not outside: say so (a new division alone names itself).
        raise UnknownReference("division" if isinstance(command, c.DrawGrid) else "grid", place)
    if not place:
        if places.level(principal.jurisdiction) not in TOP_LEVELS:
            raise AccessDenied(
                f"{command.name} names no grid; only a principal of a district or a city may issue it",
                principal.commands(),
            )
        return
    if principal.jurisdiction not in places.above(place):
        raise AccessDenied(
            f"{place} is outside the jurisdiction {principal.jurisdiction} of {principal.name}", principal.commands()
        )


def _check_assignment(app: Gridloop, principal: Principal, command: c.Command) -> None:
    """Grid workers and departments act on their own cases, patrols and duty only."""
    if isinstance(command, c.CaseCommand):
        case = app.case(command.case_id)
        assignee = case.worker if principal.role is Role.GRID_WORKER else case.unit
        if assignee != principal.actor:
            raise AccessDenied(f"case {command.case_id} is not assigned to {principal.actor}", principal.commands())
    elif isinstance(command, c.StartPatrol | c.SetDuty):
        if command.worker != principal.actor:
            raise AccessDenied(f"{principal.actor} may {command.name} only for itself", principal.commands())
    elif (
        isinstance(command, c.VisitCheckpoint | c.ReportFinding | c.EndPatrol)
        and app.patrol(command.patrol_id).worker != principal.actor
    ):
        raise AccessDenied(f"patrol {command.patrol_id} is not {principal.actor}'s", principal.commands())
