"""A one-grid sample district (垣曲县 → 新城镇 → 东峰山社区 → one grid) for benchmarks, examples and tests."""

from __future__ import annotations

from engine import commands as c
from engine.application import Gridloop

DISTRICT, STREET, COMMUNITY = "140827", "140827100", "140827100001"
GRID = "140827100001001"
BOX = '{"type":"Polygon","coordinates":[[[111.6,35.3],[111.7,35.3],[111.7,35.4],[111.6,35.3]]]}'
"""A closed GeoJSON ring around Yuanqu's county seat (illustrative)."""


def district_commands(actor: str = "admin", prefix: str = "sample") -> list[c.Command]:
    """The commands that set the sample district up (ids are stable, so running them twice is a no-op)."""
    return [
        c.EstablishDivision(
            command_id=f"{prefix}-d", actor=actor, code=DISTRICT, division_name="垣曲县", level="district"
        ),
        c.EstablishDivision(
            command_id=f"{prefix}-s", actor=actor, code=STREET, division_name="新城镇", level="street", parent=DISTRICT
        ),
        c.EstablishDivision(
            command_id=f"{prefix}-c",
            actor=actor,
            code=COMMUNITY,
            division_name="东峰山社区",
            level="community",
            parent=STREET,
        ),
        c.DrawGrid(
            command_id=f"{prefix}-g",
            actor=actor,
            code=GRID,
            grid_name="东峰山1",
            community=COMMUNITY,
            households=520,
            boundary=BOX,
        ),
    ]


def set_up_district(app: Gridloop, actor: str = "admin", prefix: str = "sample") -> str:
    """Record the sample district through the command path; returns the grid code."""
    for command in district_commands(actor, prefix):
        app.execute(command)
    return GRID
