"""The dispatcher console end to end in headless Chromium: sign in, the board, dispatch a case from its page and
see it move (on the case page, on the board after its own refresh, in its trace), the map, what a narrower role
sees, and an API refusal shown in the API's words. Every wait is on the page's own signals (body[data-refreshed],
a row's data-status, #case[data-status]), never a fixed sleep."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from .conftest import ARTIFACTS, DISTRICT, Served, json_of

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

SIGNED_IN = re.compile(r"/console/(\?.*)?$")


def sign_in(page: Page, served: Served, token: str) -> None:
    """Through the sign-in page: the token is checked against /v1/whoami and kept for this tab."""
    page.goto(served.url + "/console/signin")
    page.fill("input#token", token)
    page.click("button#signin")
    page.wait_for_url(SIGNED_IN)


def refreshes(page: Page) -> int:
    """How many times the page has (re)loaded its data: the board's refreshes, the case page's loads."""
    value = page.locator("body").get_attribute("data-refreshed")
    return int(value) if value else 0


def wait_refreshed_after(page: Page, count: int) -> None:
    page.wait_for_function("n => Number(document.body.dataset.refreshed || 0) > n", arg=count)


def open_board(page: Page, served: Served, query: str = "") -> None:
    page.goto(f"{served.url}/console/{query}")
    page.wait_for_selector("body[data-refreshed]", state="attached")


def board_ids(page: Page) -> list[str]:
    return [str(row.get_attribute("data-case-id")) for row in page.locator("table#board tbody tr").all()]


SHOWN_IDS = "() => [...document.querySelectorAll('table#board tbody tr')].map(row => row.dataset.caseId).sort()"


def wait_board(page: Page, expected: Iterable[str]) -> None:
    """Wait until the board lists exactly ``expected`` (a refresh after a filter's change, or a poll, brings it);
    a refresh that was already under way when a filter changed must not count."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    wanted = sorted(expected)
    with contextlib.suppress(PlaywrightTimeout):  # the assertion below says what differs
        page.wait_for_function(f"ids => JSON.stringify(({SHOWN_IDS})()) === JSON.stringify(ids)", arg=wanted)
    assert sorted(board_ids(page)) == wanted


def api_board(client: httpx.Client, **query: Any) -> list[dict[str, Any]]:
    page = json_of(client.get("/v1/board", params={"limit": 500, **query}))
    assert page["next_cursor"] is None, "more than one page: the test district is bigger than expected"
    return list(page["cases"])


def registered_case(dispatcher: httpx.Client) -> dict[str, Any]:
    """A case the desk has registered and nobody has dispatched yet (the served district dispatches by hand)."""
    reported = api_board(dispatcher, status="reported")
    assert reported, "the simulated day left no reported case"
    case = reported[0]
    answer = json_of(
        dispatcher.post(f"/v1/cases/{case['case_id']}/register", json={"command_id": f"e2e-{uuid.uuid4()}"})
    )
    assert answer["events"] == ["Registered"] and not answer["policies"], answer
    registered = json_of(dispatcher.get(f"/v1/cases/{case['case_id']}", params={"position": answer["position"]}))
    assert registered["case"]["status"] == "registered"
    return dict(registered["case"])


def set_field(form: Locator, name: str, value: str) -> None:
    """Fill a command's field whatever control the page chose for it (an input, a textarea, a select)."""
    control = form.locator(f"[name={name}]")
    if control.evaluate("el => el.tagName") == "SELECT":
        control.select_option(value)
    else:
        control.fill(value)


def save_screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    target = ARTIFACTS / name
    page.screenshot(path=str(target), full_page=True)
    if extra := os.environ.get("GRIDLOOP_SCREENSHOT_DIR"):
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy2(target, Path(extra) / name)
    return target


# -- sign-in -------------------------------------------------------------------------------------


def test_a_page_without_a_token_goes_to_sign_in_which_refuses_a_wrong_token_in_the_apis_words(
    page: Page, served: Served
) -> None:
    page.goto(served.url + "/")
    page.wait_for_url(re.compile(r"/console/signin"))
    refused = served.client("glt_not-a-token").get("/v1/whoami")
    assert refused.status_code == 401
    page.fill("input#token", "glt_not-a-token")
    page.click("button#signin")
    error = page.locator("#error")
    error.filter(has_text=refused.json()["title"]).wait_for()
    assert refused.json()["detail"] in error.inner_text()
    assert re.search(r"/console/signin", page.url)


# -- the board -----------------------------------------------------------------------------------


def test_the_board_shows_who_is_signed_in_the_counts_the_escalations_and_every_case(page: Page, served: Served) -> None:
    token = served.token("dispatcher")
    dispatcher = served.client(token)
    sign_in(page, served, token)
    page.wait_for_selector("body[data-refreshed]", state="attached")
    page.locator("#whoami").filter(has_text="dispatcher").wait_for()
    assert DISTRICT in page.locator("#whoami").inner_text()
    for nav in ("board", "map", "kpi"):
        assert page.locator(f"a[data-nav={nav}]").count() == 1
    # Nothing changes the district while this test looks: the page's numbers are the API's.
    summary = json_of(dispatcher.get("/v1/board/summary"))
    assert summary["by_status"], summary
    for status, count in summary["by_status"].items():
        assert page.locator(f"#counts [data-status={status}] .count").inner_text().strip() == str(count), status
    cases = api_board(dispatcher)
    assert len(cases) > 50
    wait_board(page, (row["case_id"] for row in cases))
    for row in cases[:20]:
        shown = page.locator(f'table#board tbody tr[data-case-id="{row["case_id"]}"]')
        assert shown.get_attribute("data-status") == row["status"]
        assert shown.get_attribute("data-light") == (row["light"] or "none")
        assert shown.locator("a.case-link").get_attribute("href") == f"/console/cases/{row['case_id']}"
    escalations = [row["case_id"] for row in json_of(dispatcher.get("/v1/board/escalations"))["cases"]]
    listed = [str(li.get_attribute("data-case-id")) for li in page.locator("#escalations [data-case-id]").all()]
    assert listed and listed == escalations[: len(listed)]
    position = page.locator("#position").get_attribute("data-position")
    assert position and int(position) > 0
    lights = {str(row.get_attribute("data-light")) for row in page.locator("table#board tbody tr").all()}
    assert {"red", "yellow", "green"} & lights, lights
    shot = save_screenshot(page, "console-board.png")
    assert shot.stat().st_size > 10_000


def test_the_boards_filters_narrow_the_rows(page: Page, served: Served) -> None:
    token = served.token("dispatcher")
    dispatcher = served.client(token)
    sign_in(page, served, token)
    page.wait_for_selector("body[data-refreshed]", state="attached")

    everything = api_board(dispatcher)
    # The day's own mix decides what to filter by: its most common status, and its most common light.
    status = Counter(row["status"] for row in everything).most_common(1)[0][0]
    light = next(iter(Counter(row["light"] for row in everything if row["light"]).most_common(1)), ("", 0))[0]
    in_status = api_board(dispatcher, status=status)
    overdue = api_board(dispatcher, overdue="true")
    lit = [row for row in everything if (row["light"] or "none") == (light or "none")]
    assert len(in_status) < len(everything) and len(overdue) < len(everything) and len(lit) < len(everything)

    page.select_option("form#filters select[name=status]", status)
    wait_board(page, (row["case_id"] for row in in_status))
    assert {row.get_attribute("data-status") for row in page.locator("table#board tbody tr").all()} == {status}

    page.select_option("form#filters select[name=status]", "")
    page.check("form#filters input[name=overdue]")
    wait_board(page, (row["case_id"] for row in overdue))

    page.uncheck("form#filters input[name=overdue]")
    page.select_option("form#filters select[name=light]", light or "none")
    wait_board(page, (row["case_id"] for row in lit))
    assert {row.get_attribute("data-light") for row in page.locator("table#board tbody tr").all()} <= {light or "none"}


# -- a case: dispatch it, see it move, its trace -----------------------------------------------------


def test_a_dispatcher_dispatches_a_case_from_its_page_and_sees_it_move_there_on_the_board_and_in_its_trace(
    page: Page, served: Served
) -> None:
    token = served.token("dispatcher")
    dispatcher = served.client(token)
    case = registered_case(dispatcher)
    case_id, reason = case["case_id"], f"派往社区处置 e2e {uuid.uuid4().hex[:6]}"

    # The board, in its own tab, polling often; it must see the dispatch without a reload.
    sign_in(page, served, token)
    open_board(page, served, f"?grid={case['grid']}&poll=300")
    row = page.locator(f'table#board tbody tr[data-case-id="{case_id}"]')
    row.and_(page.locator("[data-status=registered]")).wait_for()
    page.evaluate("window.__sameDocument = true")

    tab = page.context.new_page()
    sign_in(tab, served, token)
    tab.goto(f"{served.url}/console/cases/{case_id}")
    tab.wait_for_selector("#case[data-status=registered]", state="attached")
    tab.wait_for_selector("body[data-refreshed]", state="attached")  # details, actions and trace are in
    trace_before = len(json_of(dispatcher.get(f"/v1/cases/{case_id}/trace"))["steps"])
    assert tab.locator("#trace .step").count() == trace_before > 0

    loads = refreshes(tab)
    form = tab.locator("#actions form[data-action=dispatch]")
    set_field(form, "unit", case["community"])
    form.locator("textarea[name=reason]").fill(reason)
    form.locator("button[type=submit]").click()

    tab.wait_for_selector("#case[data-status=dispatched]", state="attached")
    wait_refreshed_after(tab, loads)
    after = json_of(dispatcher.get(f"/v1/cases/{case_id}"))["case"]
    assert (after["status"], after["unit"]) == ("dispatched", case["community"])
    # The trace shows the new step, with the reason the operator gave.
    steps = json_of(dispatcher.get(f"/v1/cases/{case_id}/trace"))["steps"]
    assert len(steps) == trace_before + 1 and steps[-1]["action"] == "dispatch" and steps[-1]["why"] == reason
    assert tab.locator("#trace .step").count() == len(steps)
    assert tab.locator("#trace .step").last.filter(has_text=reason).count() == 1
    assert tab.locator("#actions form[data-action=dispatch]").count() == 0  # a dispatched case is not dispatched again
    assert tab.locator("#error").inner_text().strip() == ""

    # The board moved on its own (same document: no reload) to the new status.
    row.and_(page.locator("[data-status=dispatched]")).wait_for()
    assert page.evaluate("window.__sameDocument") is True
    position = page.locator("#position").get_attribute("data-position")
    assert position and int(position) >= steps[-1]["position"]


def test_an_api_refusal_is_shown_in_the_apis_own_words_and_changes_nothing(page: Page, served: Served) -> None:
    token = served.token("dispatcher")
    dispatcher = served.client(token)
    case = registered_case(dispatcher)
    nobody = f"W-nobody-{uuid.uuid4().hex[:6]}"
    # What the API answers for that command (a refused command records nothing, so asking first is harmless).
    refused = dispatcher.post(
        f"/v1/cases/{case['case_id']}/dispatch",
        json={"command_id": f"e2e-{uuid.uuid4()}", "worker": nobody, "reason": "不存在的网格员"},
    )
    assert refused.status_code == 404, refused.text
    problem = refused.json()

    sign_in(page, served, token)
    page.goto(f"{served.url}/console/cases/{case['case_id']}")
    page.wait_for_selector("#case[data-status=registered]", state="attached")
    form = page.locator("#actions form[data-action=dispatch]")
    set_field(form, "worker", nobody)
    form.locator("textarea[name=reason]").fill("不存在的网格员")
    form.locator("button[type=submit]").click()

    error = page.locator("#error")
    error.filter(has_text=problem["title"]).wait_for()
    assert problem["detail"] in error.inner_text()
    assert page.locator("#case").get_attribute("data-status") == "registered"
    assert json_of(dispatcher.get(f"/v1/cases/{case['case_id']}"))["case"]["status"] == "registered"


# -- what a narrower role sees --------------------------------------------------------------------


def test_a_supervisor_of_one_community_sees_only_its_cases_and_no_dispatch_form(page: Page, served: Served) -> None:
    dispatcher = served.client(served.token("dispatcher"))
    case = registered_case(dispatcher)
    community = case["community"]
    token = served.token("supervisor", community)
    supervisor = served.client(token)

    sign_in(page, served, token)
    page.wait_for_selector("body[data-refreshed]", state="attached")
    page.locator("#whoami").filter(has_text=community).wait_for()
    assert "supervisor" in page.locator("#whoami").inner_text()
    theirs = api_board(supervisor)
    assert theirs and {row["community"] for row in theirs} == {community}
    wait_board(page, (row["case_id"] for row in theirs))

    page.goto(f"{served.url}/console/cases/{case['case_id']}")
    page.wait_for_selector("#case[data-status=registered]", state="attached")
    page.wait_for_selector("body[data-refreshed]", state="attached")
    # A supervisor may escalate a registered case (the API says so) but not dispatch it.
    assert "escalate" in json_of(supervisor.get("/v1/whoami"))["commands"]
    assert page.locator("#actions form[data-action=escalate] textarea[name=reason]").count() == 1
    assert page.locator("#actions form[data-action=dispatch]").count() == 0
    assert page.locator("#actions form[data-action=register], #actions form[data-action=reassign]").count() == 0

    # A case of another community is outside the jurisdiction: the page says what the API says.
    elsewhere = next(row for row in api_board(dispatcher) if row["community"] != community)
    outside = supervisor.get(f"/v1/cases/{elsewhere['case_id']}")
    assert outside.status_code in (403, 404), outside.text
    page.goto(f"{served.url}/console/cases/{elsewhere['case_id']}")
    page.locator("#error").filter(has_text=outside.json()["title"]).wait_for()
    assert page.locator("#actions form").count() == 0


def test_an_auditor_reads_a_case_and_its_trace_but_is_offered_no_action(page: Page, served: Served) -> None:
    dispatcher = served.client(served.token("dispatcher"))
    case = registered_case(dispatcher)
    token = served.token("auditor")
    steps = json_of(served.client(token).get(f"/v1/cases/{case['case_id']}/trace"))["steps"]

    sign_in(page, served, token)
    page.goto(f"{served.url}/console/cases/{case['case_id']}")
    page.wait_for_selector("#case[data-status=registered]", state="attached")
    page.wait_for_selector("body[data-refreshed]", state="attached")
    assert page.locator("#trace .step").count() == len(steps) > 0
    assert page.locator("#actions form").count() == 0
    assert page.locator("#error").inner_text().strip() == ""


# -- the map --------------------------------------------------------------------------------------


def test_the_map_draws_every_grid_and_clicking_one_filters_the_board(page: Page, served: Served) -> None:
    token = served.token("dispatcher")
    dispatcher = served.client(token)
    grids = {
        row["code"]
        for row in json_of(dispatcher.get("/v1/divisions", params={"level": "grid"}))["divisions"]
        if row["boundary"] and not row["retired"]
    }
    assert len(grids) > 50
    sign_in(page, served, token)
    page.goto(f"{served.url}/console/map")
    page.locator("svg#map path[data-grid]").first.wait_for()
    page.wait_for_function("n => document.querySelectorAll('svg#map path[data-grid]').length >= n", arg=len(grids))
    drawn = {str(path.get_attribute("data-grid")) for path in page.locator("svg#map path[data-grid]").all()}
    assert drawn == grids
    for path in page.locator("svg#map path[data-grid]").all():
        assert path.get_attribute("d"), path.get_attribute("data-grid")
        assert int(str(path.get_attribute("data-open"))) >= 0
        assert int(str(path.get_attribute("data-overdue"))) >= 0

    busiest = json_of(dispatcher.get("/v1/board/summary"))["top_grids"][0]
    grid = busiest["grid"]
    path = page.locator(f'svg#map path[data-grid="{grid}"]')
    assert int(str(path.get_attribute("data-open"))) == busiest["open"]
    assert int(str(path.get_attribute("data-overdue"))) == busiest["overdue"]
    path.click()
    page.wait_for_url(re.compile(rf"/console/\?(.*&)?grid={grid}\b"))
    in_grid = [row["case_id"] for row in api_board(dispatcher, grid=grid)]
    assert len(in_grid) >= busiest["open"]
    wait_board(page, in_grid)
    assert page.locator("form#filters input[name=grid]").input_value() == grid
