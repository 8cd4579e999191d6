"""The process managers a gridloop runs, chosen by name: a dispatch policy and the supervisor."""

from __future__ import annotations

from engine.application import Gridloop
from engine.dispatch import POLICIES
from engine.errors import UnknownReference
from engine.process import Processes, ProcessManager
from engine.routing import RoutingTable
from engine.supervisor import Supervisor

NO_POLICY = "none"
"""Dispatch by hand only (the desk's people decide every dispatch)."""


def managers(
    app: Gridloop, *, dispatch: str = "balanced", supervise: bool = True, routing: RoutingTable | None = None
) -> list[ProcessManager]:
    """The managers for ``app``: the named dispatch policy (or none) and, unless told not to, the supervisor."""
    found: list[ProcessManager] = []
    if dispatch != NO_POLICY:
        policy = POLICIES.get(dispatch)
        if policy is None:
            raise UnknownReference("dispatch policy", dispatch, [*POLICIES, NO_POLICY])
        found.append(policy(app.catalogue, app.calendar, routing or RoutingTable.load(app.catalogue)))
    if supervise:
        found.append(Supervisor(app.catalogue, app.calendar))
    return found


def processes(
    app: Gridloop, *, dispatch: str = "balanced", supervise: bool = True, routing: RoutingTable | None = None
) -> Processes:
    """A runner of the standard managers over ``app``'s log."""
    return Processes(app, managers(app, dispatch=dispatch, supervise=supervise, routing=routing))
