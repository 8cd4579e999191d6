"""The console's pages and static files under /console. Pages are shells: the browser holds the token
(sessionStorage) and calls the JSON API itself, which enforces role and jurisdiction."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

import jinja2
from fastapi import APIRouter
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, Response

PREFIX = "/console"
STATIC = f"{PREFIX}/static"
MEDIA = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8", "svg": "image/svg+xml"}
STATIC_NAME = re.compile(r"^[a-z0-9_-]+\.(js|css|svg)$")
STATUSES = (
    ("reported", "上报 Reported"),
    ("registered", "立案 Registered"),
    ("dispatched", "派遣 Dispatched"),
    ("accepted", "签收 Accepted"),
    ("returned", "退单 Returned"),
    ("extension_requested", "延期申请 Extension requested"),
    ("suspended", "挂账 Suspended"),
    ("handled", "处置反馈 Handled"),
    ("reopened", "返工 Reopened"),
    ("closed", "结案 Closed"),
    ("evaluated", "回访考评 Evaluated"),
    ("rejected", "不予立案 Rejected"),
    ("merged", "合并 Merged"),
)
"""Every case status in lifecycle order, with its label (the board's counts and its status filter)."""
TOTALS = (("open", "在办 Open"), ("overdue", "超期 Overdue"), ("escalated", "督办 Escalated"))
NO_CACHE = {"Cache-Control": "no-cache"}
"""Pages and scripts are revalidated every time: an upgraded server never runs with yesterday's script."""


@cache
def environment() -> jinja2.Environment:
    # PackageLoader finds the templates in an installed package too (package data: see pyproject.toml).
    return jinja2.Environment(
        loader=jinja2.PackageLoader("projections.api.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def page(template: str, *, title: str, nav: str = "", script: str | None = None, **context: Any) -> HTMLResponse:
    """A page shell: ``template`` (extends base.html) with its title, the active nav link and its JS module."""
    html = (
        environment()
        .get_template(template)
        .render(title=title, nav=nav, script=script, static=STATIC, prefix=PREFIX, **context)
    )
    return HTMLResponse(html, headers=NO_CACHE)


def static_file(name: str) -> bytes | None:
    """A static file's bytes, or None if there is no such file (only plain names: no paths, no other types)."""
    if not STATIC_NAME.match(name):
        return None
    file = resources.files("projections.api.console").joinpath("static", name)
    return file.read_bytes() if file.is_file() else None


def router() -> APIRouter:
    """The console: sign-in, board, map (and the case and KPI pages), and its static files."""
    console = APIRouter(prefix=PREFIX, include_in_schema=False)

    @console.get("/", response_class=HTMLResponse)
    async def board() -> HTMLResponse:
        return page(
            "board.html", title="案件总览 Board", nav="board", script="board.js", statuses=STATUSES, totals=TOTALS
        )

    @console.get("/signin", response_class=HTMLResponse)
    async def signin() -> HTMLResponse:
        return page("signin.html", title="登录 Sign in", script="signin.js")

    @console.get("/map", response_class=HTMLResponse)
    async def grid_map() -> HTMLResponse:
        return page("map.html", title="网格地图 Map", nav="map", script="map.js")

    @console.get("/cases/{case}", response_class=HTMLResponse)
    async def case_page(case: str) -> HTMLResponse:
        return page("case.html", title=f"案件 Case {case[:8]}", nav="board", script="case.js", case=case)

    @console.get("/kpi", response_class=HTMLResponse)
    async def kpi() -> HTMLResponse:
        return page("kpi.html", title="考核 KPI", nav="kpi", script="kpi.js")

    @console.get("/static/{name}")
    async def static(name: str) -> Response:
        data = static_file(name)
        if data is None:
            raise HTTPException(404, f"{STATIC}/{name}: no such file")
        return Response(data, media_type=MEDIA[name.rsplit(".", 1)[1]], headers=NO_CACHE)

    return console
