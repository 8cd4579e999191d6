"""A preset made concrete: divisions, synthetic grids, named staff, and the commands that set them up."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from dataclasses import dataclass

from engine import commands as c
from ops.presets import CommunitySpec, Preset
from ops.simulation.geometry import Box, tile
from ops.simulation.names import person_name
from ops.simulation.randomness import stream

MEDIATION = "mediation"
"""The skill a people's mediator (人民调解员) has and a dispute category asks for."""


@dataclass(frozen=True)
class GridPlan:
    """One grid (网格) of the district, with the staff the simulator routes its work to."""

    code: str
    name: str
    community: str
    street: str
    district: str
    households: int
    box: Box
    worker: str
    mediator: str  # empty when the preset has no mediators


@dataclass(frozen=True)
class WorkerPlan:
    """One person on the grid team and the grids they are assigned to."""

    code: str
    name: str
    role: str
    unit: str
    grid: str
    skills: tuple[str, ...]
    grids: tuple[str, ...]


@dataclass(frozen=True)
class District:
    """The concrete reference model the simulator sets up and then runs."""

    preset: Preset
    grids: tuple[GridPlan, ...]
    workers: tuple[WorkerPlan, ...]

    @property
    def admin(self) -> str:
        """Who sets the reference model up."""
        return f"admin:{self.preset.top().code}"

    def on_duty_roster(self) -> tuple[WorkerPlan, ...]:
        """Who signs in each morning: grid workers and mediators (dispatched to) and grid leaders."""
        return tuple(w for w in self.workers if w.role in ("grid_worker", "mediator", "grid_leader"))


def spread(items: int, bins: int) -> list[int]:
    """Item ``k`` of ``items`` goes to bin ``k * bins // items``: contiguous, balanced blocks."""
    return [k * bins // items for k in range(items)] if items and bins else []


def plan_district(preset: Preset) -> District:
    """The district a preset describes; names come from the preset's seed, never the run's."""
    names = stream(preset.seed, "names")
    mediators = _mediators(preset, names)
    mediator_of = {community: m.code for m in reversed(mediators) for community in m.grids}  # the first wins
    grids = _grids(preset, mediator_of)
    workers = [
        WorkerPlan(g.worker, person_name(names), "grid_worker", g.community, g.code, (), (g.code,)) for g in grids
    ]
    workers += _leaders(preset, grids, names)
    workers += _assistants(preset, grids, names)
    # A mediator serves whole communities: assigned to each of their grids.
    workers += [dataclasses.replace(m, grids=tuple(g.code for g in grids if g.community in m.grids)) for m in mediators]
    return District(preset=preset, grids=tuple(grids), workers=tuple(workers))


def _grids(preset: Preset, mediator_of: dict[str, str]) -> list[GridPlan]:
    """Each community's households split evenly over its grids, tiled as synthetic rectangles."""
    streets = {d.code: d for d in preset.divisions if d.level == "street"}
    rows: list[tuple[CommunitySpec, int, int]] = []  # community, grid number, households
    for community in preset.communities:
        base, extra = divmod(community.households, community.grids)
        rows += [(community, n, max(1, base + (n <= extra))) for n in range(1, community.grids + 1)]
    grids = []
    for box, (community, n, households) in zip(tile(preset.center, len(rows)), rows, strict=True):
        street = streets[community.street]
        code = f"{community.code}{n:03d}"
        grids.append(
            GridPlan(
                code=code, name=f"{community.name}第{n}网格(示意)", community=community.code, street=street.code,
                district=street.parent or street.code, households=households, box=box, worker=f"W{code}",
                mediator=mediator_of.get(community.code, ""),
            )
        )  # fmt: skip
    return grids


def _mediators(preset: Preset, names: random.Random) -> list[WorkerPlan]:
    """People's mediators over contiguous blocks of communities; ``grids`` holds community codes until placed."""
    communities, count = preset.communities, preset.staff.mediators
    if not count or not communities:
        return []
    served: list[list[CommunitySpec]] = [[] for _ in range(count)]
    if count <= len(communities):
        for community, index in zip(communities, spread(len(communities), count), strict=True):
            served[index].append(community)
    else:
        for index, at in enumerate(spread(count, len(communities))):
            served[index].append(communities[at])
    top = preset.top().code
    return [
        WorkerPlan(
            f"M{top}{i + 1:04d}",
            person_name(names),
            "mediator",
            block[0].street,
            "",
            (MEDIATION,),
            tuple(community.code for community in block),
        )
        for i, block in enumerate(served)
    ]


def _leaders(preset: Preset, grids: list[GridPlan], names: random.Random) -> list[WorkerPlan]:
    """Grid leaders (网格长), each over a contiguous block of grids."""
    count = preset.staff.grid_leaders
    if count <= len(grids):
        led: list[list[GridPlan]] = [[] for _ in range(count)]
        for grid, index in zip(grids, spread(len(grids), count), strict=True):
            led[index].append(grid)
    else:
        led = [[grids[at]] for at in spread(count, len(grids))]
    top = preset.top().code
    return [
        WorkerPlan(
            f"L{top}{i + 1:04d}",
            person_name(names),
            "grid_leader",
            block[0].community,
            "",
            (),
            tuple(g.code for g in block),
        )
        for i, block in enumerate(led)
    ]


def _assistants(preset: Preset, grids: list[GridPlan], names: random.Random) -> list[WorkerPlan]:
    """Grid assistants (网格辅助员) spread evenly over the grids."""
    assistants: list[WorkerPlan] = []
    per_grid: dict[str, int] = {}
    for at in spread(preset.staff.grid_assistants, len(grids)):
        grid = grids[at]
        per_grid[grid.code] = per_grid.get(grid.code, 0) + 1
        code = f"A{grid.code}{per_grid[grid.code]:02d}"
        name = person_name(names)
        assistants.append(WorkerPlan(code, name, "grid_assistant", grid.community, grid.code, (), (grid.code,)))
    return assistants


def setup_commands(district: District) -> Iterator[c.Command]:
    """The commands that establish the district, top down; their ids depend only on the preset."""
    preset, actor = district.preset, district.admin
    prefix = f"sim:{preset.name}:setup"
    for division in preset.divisions:
        yield c.EstablishDivision(
            command_id=f"{prefix}:division:{division.code}", actor=actor, code=division.code,
            division_name=division.name, level=division.level, parent=division.parent or "",
        )  # fmt: skip
    for community in preset.communities:
        yield c.EstablishDivision(
            command_id=f"{prefix}:division:{community.code}", actor=actor, code=community.code,
            division_name=community.name, level="community", parent=community.street,
        )  # fmt: skip
    for grid in district.grids:
        yield c.DrawGrid(
            command_id=f"{prefix}:grid:{grid.code}", actor=actor, code=grid.code, grid_name=grid.name,
            community=grid.community, households=grid.households, boundary=grid.box.polygon(),
        )  # fmt: skip
    for worker in district.workers:
        yield c.EnrollWorker(
            command_id=f"{prefix}:worker:{worker.code}", actor=actor, code=worker.code, worker_name=worker.name,
            role=worker.role, unit=worker.unit, grid=worker.grid, skills=list(worker.skills),
        )  # fmt: skip
        for grid_code in worker.grids:
            yield c.AssignStaff(
                command_id=f"{prefix}:staff:{grid_code}:{worker.role}:{worker.code}", actor=actor,
                grid=grid_code, role=worker.role, worker=worker.code,
            )  # fmt: skip
