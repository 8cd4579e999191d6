"""The report endpoints through the real server: the CLI's numbers, scopes, refusals, and the charts."""

from __future__ import annotations

import itertools
import json
import xml.etree.ElementTree as ET
from typing import Any

from click.testing import CliRunner

from ops.cli import main
from projections.api.access import Role
from projections.kpi_queries import LEVELS, KpiRow, kpi_table, parse_period
from tests.api.conftest import DISTRICT, Api

PERIOD = "2026-11"
"""The month of the simulated day (2026-11-02)."""


def table(api: Api, level: str, **params: str) -> Any:
    response = api.as_role(Role.ANALYST).get("/v1/reports/kpi", params={"level": level, "period": PERIOD, **params})
    assert response.status_code == 200, response.text
    return response.json()


def communities(api: Api) -> list[KpiRow]:
    return kpi_table(api.service.rt.views, "community", parse_period(PERIOD))


def test_the_api_serves_the_numbers_gridloop_report_prints(api: Api) -> None:
    served = table(api, "community")
    done = CliRunner().invoke(
        main,
        ["--data-dir", str(api.settings.data_dir), "report", "--level", "community", "--period", PERIOD, "--json",
         "--within", DISTRICT, "--out", str(api.settings.data_dir / "charts")],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    printed = json.loads(done.stdout)

    assert printed.pop("charts")
    assert printed == served
    assert len(served["rows"]) == 15  # Yuanqu's fifteen communities all had cases that day
    assert served["rates"][1] == {"key": "on_time_closure_rate", "label": "按期结案率"}


def test_the_table_is_ranked_best_first_with_competition_ranks(api: Api) -> None:
    rows = table(api, "grid")["rows"]
    scores = [row["score"] for row in rows if row["score"] is not None]

    assert scores == sorted(scores, reverse=True)
    assert rows[0]["rank"] == 1
    for before, after in itertools.pairwise(rows):
        if after["score"] is not None:
            assert after["rank"] == (before["rank"] if after["score"] == before["score"] else rows.index(after) + 1)
    expected = kpi_table(api.service.rt.views, "grid", parse_period(PERIOD), within=DISTRICT)
    assert [row["code"] for row in rows] == [row.code for row in expected]


def test_a_trend_ends_with_the_row_of_the_table_for_the_same_period(api: Api) -> None:
    best = communities(api)[0]
    client = api.as_role(Role.SUPERVISOR)
    response = client.get(
        "/v1/reports/kpi/trend", params={"level": "community", "code": best.code, "periods": 3, "period": PERIOD}
    )
    assert response.status_code == 200, response.text
    trend = response.json()

    assert [p["period"]["label"] for p in trend["periods"]] == ["2026-09", "2026-10", PERIOD]
    assert trend["name"] == best.name
    last = trend["periods"][-1]
    assert (last["score"], last["grade"], last["rates"], last["counts"]) == (
        best.score, best.grade, best.rates, best.counts,
    )  # fmt: skip
    assert trend["periods"][0]["score"] is None  # no activity in September


def test_a_community_dispatcher_sees_its_own_grids_and_is_refused_the_district(api: Api) -> None:
    community = communities(api)[0].code
    client = api.as_role(Role.DISPATCHER, jurisdiction=community)

    own = client.get("/v1/reports/kpi", params={"level": "grid", "period": PERIOD})
    assert own.status_code == 200
    assert own.json()["within"] == community
    assert own.json()["rows"] and all(row["code"].startswith(community) for row in own.json()["rows"])

    wider = client.get("/v1/reports/kpi", params={"level": "grid", "period": PERIOD, "within": DISTRICT})
    assert wider.status_code == 403
    assert wider.headers["content-type"] == "application/problem+json"
    assert community in wider.json()["detail"]

    other = next(row.code for row in communities(api) if row.code != community)
    trend = client.get("/v1/reports/kpi/trend", params={"level": "community", "code": other, "period": PERIOD})
    assert trend.status_code == 403
    chart = client.get("/v1/reports/charts/ranking.svg", params={"level": "grid", "period": PERIOD, "within": other})
    assert chart.status_code == 403


def test_a_grid_worker_reads_no_reports(api: Api) -> None:
    response = api.as_role(Role.GRID_WORKER, actor="w-1").get(
        "/v1/reports/kpi", params={"level": "worker", "period": PERIOD}
    )
    assert response.status_code == 403
    assert "reports" in response.json()["detail"]


def test_an_unknown_level_or_a_bad_period_is_a_problem_naming_what_is_allowed(api: Api) -> None:
    client = api.as_role(Role.ANALYST)

    level = client.get("/v1/reports/kpi", params={"level": "town", "period": PERIOD})
    assert level.status_code == 400
    assert level.headers["content-type"] == "application/problem+json"
    assert level.json()["parameter"] == "level"
    assert level.json()["allowed"] == list(LEVELS)

    period = client.get("/v1/reports/kpi/trend", params={"level": "grid", "code": "1", "period": "2026-13"})
    assert period.status_code == 400
    assert period.json()["parameter"] == "period"
    assert any("2026-W47" in form for form in period.json()["allowed"])

    unknown = client.get("/v1/reports/kpi", params={"level": "grid", "period": PERIOD, "within": "999"})
    assert unknown.status_code == 404


def test_the_charts_are_served_as_svg_and_png_naming_the_units(api: Api) -> None:
    client = api.as_role(Role.ADMIN)
    params = {"level": "community", "period": PERIOD, "periods": "2"}

    svg = client.get("/v1/reports/charts/ranking.svg", params=params)
    assert svg.status_code == 200, svg.text
    assert svg.headers["content-type"] == "image/svg+xml"
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))
    text = " ".join(node.text or "" for node in ET.fromstring(svg.content, parser=parser).iter())
    assert all(row.code in text for row in communities(api))
    assert client.get("/v1/reports/charts/ranking.svg", params=params).content == svg.content

    png = client.get("/v1/reports/charts/overdue.png", params=params)
    assert png.status_code == 200
    assert png.content.startswith(b"\x89PNG")
    assert client.get("/v1/reports/charts/pie.svg", params=params).status_code == 422
