"""The console's server side: page shells, static files, no external resource, `/` → the board, and the
per-grid load read behind the map (scoped like the board). The browser side is tests/e2e."""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

import httpx
import pytest

from engine.lifecycle import OPEN, Status
from projections.api.access import Role
from projections.api.console import router as console
from tests.api.conftest import DISTRICT, Api, served_copy

CONSOLE = Path(console.__file__).parent
ROOT = Path(__file__).resolve().parents[2]
PAGES = {"/console/": "board", "/console/map": "map", "/console/signin": "signin"}
URL = re.compile(r"https?://[^\s\"'`)<>]*", re.IGNORECASE)
NAMESPACES = {"http://www.w3.org/2000/svg"}
"""XML namespace names: identifiers the browser never fetches (map.js creates SVG elements in this namespace)."""


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, district_template: Path) -> Iterator[Api]:
    """One served district for the module: every test here only reads (and mints tokens)."""
    yield from served_copy(district_template, tmp_path_factory, "console")


def console_files() -> list[Path]:
    return sorted(p for p in (CONSOLE / "templates").iterdir() if p.is_file()) + sorted(
        p for p in (CONSOLE / "static").iterdir() if p.is_file()
    )


@pytest.mark.parametrize("path", sorted(PAGES))
def test_pages_are_served_as_html_shells_with_the_common_header(api: Api, path: str) -> None:
    # No token: a page is only a shell (the data come from the API with the token the browser holds).
    answer = api.client().get(path)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    html = answer.text
    for marker in ('id="whoami"', 'id="signout"', 'data-nav="board"', 'data-nav="map"', 'data-nav="kpi"'):
        assert marker in html
    assert f'src="/console/static/{PAGES[path]}.js"' in html
    assert 'src="/console/static/api.js"' in html
    assert 'href="/console/static/console.css"' in html


def test_the_board_shell_has_a_count_and_a_filter_option_for_every_status(api: Api) -> None:
    html = api.client().get("/console/").text
    for status in Status:
        assert f'data-status="{status.value}"' in html
        assert f'<option value="{status.value}">' in html
    for element in ('id="counts"', 'id="escalations"', 'form id="filters"', 'table id="board"', 'id="position"'):
        assert element in html
    for field in ('select name="status"', 'input name="grid"', 'name="overdue"', 'select name="light"'):
        assert field in html


def test_the_signin_and_map_shells_carry_their_elements(api: Api) -> None:
    client = api.client()
    signin = client.get("/console/signin").text
    assert 'input id="token"' in signin and 'button id="signin"' in signin and 'id="error"' in signin
    assert 'svg id="map"' in client.get("/console/map").text


@pytest.mark.parametrize(
    ("name", "media"),
    [
        ("console.css", "text/css"),
        ("api.js", "text/javascript"),
        ("board.js", "text/javascript"),
        ("map.js", "text/javascript"),
        ("signin.js", "text/javascript"),
    ],
)
def test_static_files_are_served_with_their_type(api: Api, name: str, media: str) -> None:
    answer = api.client().get(f"/console/static/{name}")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith(media)
    assert answer.content == (CONSOLE / "static" / name).read_bytes()


@pytest.mark.parametrize("name", ["nothing.js", "..%2Frouter.py", "router.py", "%2E%2E%2F__init__.py", "API.JS"])
def test_only_the_static_files_are_served(api: Api, name: str) -> None:
    answer = api.client().get(f"/console/static/{name}")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"


def test_no_template_or_static_file_refers_to_another_origin() -> None:
    # The machines have no internet: no CDN, font, tile server or analytics, and no protocol-relative link.
    files = console_files()
    assert {p.name for p in files} >= {"base.html", "signin.html", "board.html", "map.html", "api.js", "console.css"}
    for path in files:
        text = path.read_text(encoding="utf-8")
        external = [url for url in URL.findall(text) if url not in NAMESPACES]
        assert external == [], f"{path.name} refers to {external}"
        assert not re.search(r"""(src|href|action)\s*=\s*["']//""", text), path.name
        if path.suffix == ".css":
            assert "@import" not in text and "url(" not in text, path.name


def test_the_package_ships_the_templates_and_static_files() -> None:
    # An installed (non-editable) package must carry them: they are package data.
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert "projections.api.console" in setuptools["packages"]
    patterns = setuptools["package-data"]["projections.api.console"]
    for path in console_files():
        relative = path.relative_to(CONSOLE).as_posix()
        assert any(fnmatch(relative, pattern) for pattern in patterns), relative


def test_the_root_redirects_to_the_board(api: Api) -> None:
    answer = api.client().get("/", follow_redirects=False)
    assert answer.status_code in (302, 303, 307)
    assert answer.headers["location"] == "/console/"
    assert "/" not in api.client().get("/openapi.json").json()["paths"]


def open_counts(client: httpx.Client) -> Counter[str]:
    """Open cases per grid, counted from the board itself (one page holds the simulated day)."""
    statuses = ",".join(sorted(s.value for s in OPEN))
    page = client.get("/v1/board", params={"status": statuses, "limit": 500}).json()
    assert page["next_cursor"] is None
    return Counter(row["grid"] for row in page["cases"])


def test_grid_loads_agree_with_the_board_and_the_summary(api: Api) -> None:
    client = api.as_role(Role.DISPATCHER)
    answer = client.get("/v1/board/grids")
    assert answer.status_code == 200
    assert "X-Gridloop-Position" in answer.headers
    grids = answer.json()["grids"]
    assert [g["grid"] for g in grids] == sorted(g["grid"] for g in grids)
    assert {g["grid"]: g["open"] for g in grids} == open_counts(client)
    summary = client.get("/v1/board/summary").json()
    assert sum(g["open"] for g in grids) == summary["open"]
    assert sum(g["overdue"] for g in grids) == summary["overdue"]
    assert all(0 <= g["overdue"] <= g["open"] for g in grids)
    assert sum(g["overdue"] for g in grids) > 0, "the simulated day leaves overdue cases (else this test is blind)"
    for top in summary["top_grids"]:
        assert top in grids


def test_grid_loads_are_scoped_to_the_jurisdiction(api: Api) -> None:
    everywhere = api.as_role(Role.DISPATCHER).get("/v1/board/grids").json()["grids"]
    community = max(Counter(g["community"] for g in everywhere).items(), key=lambda item: item[1])[0]
    inside = api.as_role(Role.SUPERVISOR, community).get("/v1/board/grids").json()["grids"]
    assert inside == [g for g in everywhere if g["community"] == community]
    assert len(inside) < len(everywhere)
    assert api.as_role(Role.DISPATCHER, "999999").get("/v1/board/grids").json()["grids"] == []


def test_a_grid_worker_sees_only_the_load_of_its_own_cases(api: Api) -> None:
    dispatcher = api.as_role(Role.DISPATCHER)
    statuses = ",".join(sorted(s.value for s in OPEN))
    rows = dispatcher.get("/v1/board", params={"status": statuses, "limit": 500}).json()["cases"]
    worker = Counter(row["worker"] for row in rows if row["worker"]).most_common(1)[0][0]
    mine = Counter(row["grid"] for row in rows if row["worker"] == worker)
    as_worker = api.as_role(Role.GRID_WORKER, DISTRICT, actor=worker)
    assert {g["grid"]: g["open"] for g in as_worker.get("/v1/board/grids").json()["grids"]} == mine


@pytest.mark.parametrize(("role", "status"), [(Role.ANALYST, 200), (Role.AUDITOR, 200), (Role.REPORTER, 403)])
def test_grid_loads_are_a_board_read(api: Api, role: Role, status: int) -> None:
    assert api.as_role(role).get("/v1/board/grids").status_code == status


def test_grid_loads_need_a_token(api: Api) -> None:
    answer = api.client().get("/v1/board/grids")
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"


def test_the_map_finds_every_grid_boundary_in_the_division_tree(api: Api) -> None:
    # The map draws /v1/divisions' grid boundaries (GeoJSON geometries) and colours them by /v1/board/grids.
    client = api.as_role(Role.DISPATCHER)
    divisions = client.get("/v1/divisions", params={"level": "grid"}).json()["divisions"]
    assert divisions and all(d["boundary"] for d in divisions if not d["retired"])
    codes = {d["code"] for d in divisions}
    assert {g["grid"] for g in client.get("/v1/board/grids").json()["grids"]} <= codes
