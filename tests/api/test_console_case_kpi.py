"""The console's case and KPI pages (no browser): the shells are served with the elements the browser tests and
the scripts rely on, the scripts use the shared API helper and nothing outside the server, and a case's detail
says which actions its state allows now (the case page builds its forms from that and /v1/commands)."""

from __future__ import annotations

import asyncio
import re
from html.parser import HTMLParser

import httpx
import pytest
from fastapi import FastAPI

from engine.lifecycle import Status, allowed_actions
from projections.api.console import router as console
from tests.api.conftest import Api


class Elements(HTMLParser):
    """Every start tag of a page, with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))

    def find(self, tag: str, **wanted: str) -> list[dict[str, str]]:
        return [
            attrs
            for name, attrs in self.tags
            if name == tag and all(attrs.get(key.replace("_", "-")) == value for key, value in wanted.items())
        ]

    def one(self, tag: str, **wanted: str) -> dict[str, str]:
        found = self.find(tag, **wanted)
        assert len(found) == 1, f"{tag} {wanted}: {len(found)} found"
        return found[0]


class Client:
    """The console's router alone, called in-process (no server, no district)."""

    def __init__(self) -> None:
        self.app = FastAPI()
        self.app.include_router(console.router())

    def get(self, path: str) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
                return await client.get(path)

        return asyncio.run(call())


@pytest.fixture(scope="module")
def client() -> Client:
    return Client()


def page(client: Client, path: str) -> Elements:
    response = client.get(path)
    assert response.status_code == 200, path
    assert response.headers["content-type"].startswith("text/html")
    parsed = Elements()
    parsed.feed(response.text)
    return parsed


def common(html: Elements, script: str) -> None:
    html.one("span", id="whoami")
    html.one("a", id="signout")
    for nav in ("board", "map", "kpi"):
        html.one("a", data_nav=nav)
    scripts = {attrs["src"] for attrs in html.find("script", type="module")}
    assert scripts == {"/console/static/api.js", f"/console/static/{script}"}


def test_case_page_shell(client: Client) -> None:
    html = page(client, "/console/cases/1600e1a0")
    common(html, "case.js")
    case = html.one("section", id="case")
    assert case["data-case"] == "1600e1a0" and "data-status" in case
    html.one("div", id="trace")
    html.one("div", id="actions")
    html.one("p", id="error")
    html.one("a", id="trace-export")


def test_case_page_escapes_the_case_from_the_path(client: Client) -> None:
    response = client.get('/console/cases/"><img src=x onerror=alert(1)>')
    assert response.status_code == 200
    assert "<img src=x" not in response.text and "&#34;&gt;&lt;img src=x" in response.text


def test_kpi_page_shell(client: Client) -> None:
    html = page(client, "/console/kpi")
    common(html, "kpi.js")
    levels = {attrs["value"] for attrs in html.find("option")}
    assert levels == {"grid", "community", "street", "district", "department", "worker"}
    html.one("select", name="level")
    html.one("input", name="period")
    html.one("table", id="kpi")
    charts = html.find("img", **{"class": "chart"})
    assert sorted(attrs["data-chart"] for attrs in charts) == ["overdue", "ranking", "trend"]
    assert "gridloop evaluate" in client.get("/console/kpi").text  # 四度 and coverage: the CLI's, said in one line


@pytest.mark.parametrize("script", ["case.js", "kpi.js"])
def test_scripts_use_the_shared_helper_and_nothing_external(client: Client, script: str) -> None:
    response = client.get(f"/console/static/{script}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    source = response.text
    assert 'from "./api.js"' in source
    assert "fetch(" not in source and "sessionStorage" not in source  # the token and the calls are api.js's
    assert not re.search(r"https?://", source)


def test_case_detail_names_the_actions_its_state_allows(api: Api) -> None:
    desk = api.as_role("dispatcher")
    cases = desk.get("/v1/board", params={"limit": 500}).json()["cases"]
    seen = set()
    for row in cases:
        if row["status"] in seen:
            continue
        seen.add(row["status"])
        detail = desk.get(f"/v1/cases/{row['short_id']}").json()
        assert detail["allowed_actions"] == list(allowed_actions(Status(row["status"])))
    assert {"accepted", "closed"} <= seen
    assert api.client().get(f"/console/cases/{cases[0]['case_id']}").status_code == 200  # served by gridloop serve
