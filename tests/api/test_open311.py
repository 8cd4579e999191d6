"""Open311 GeoReport v2 over a served district: the georeport client reads, form posts report, errors change nothing."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import requests
import structlog
import xmltodict  # type: ignore[import-untyped]  # georeport's own dependency, no stubs
from georeport import GeoReport

from engine.lifecycle import OPEN

from .conftest import DISTRICT, Api

ROOT = "/open311/v2"
GRID = "140827100001001"
COMMUNITY = "140827100001"
OTHER_COMMUNITY = "140827100002"
LAT, LONG = "35.3135", "111.652"
"""A point inside GRID."""
CLOSED_STATUSES = {"closed", "evaluated", "rejected", "merged"}
FORMATS = ("json", "xml")


def georeport(api: Api, fmt: str = "json", jurisdiction: str | None = None) -> GeoReport:
    return GeoReport(root_address=api.url + ROOT, jurisdiction=jurisdiction, output_format=fmt)


def listed(value: Any) -> list[dict[str, Any]]:
    """georeport's XML answers: one request is a dict, several a list, none None."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def post(api: Api, fields: dict[str, str], fmt: str = "json", key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return api.client().post(f"{ROOT}/requests.{fmt}", data=fields, headers=headers)


def report(token: str, **fields: str) -> dict[str, str]:
    form = {"api_key": token, "service_code": "C0102", "lat": LAT, "long": LONG, "description": "井盖破损, 有人绊倒"}
    return {**form, **fields}


def errors(response: httpx.Response, fmt: str) -> list[dict[str, Any]]:
    if fmt == "json":
        body: list[dict[str, Any]] = response.json()
        return body
    return listed(xmltodict.parse(response.content)["errors"]["error"])


def events(api: Api) -> int:
    return int(api.service.rt.app.recorder.max_notification_id() or 0)


@pytest.fixture
def desk(api: Api) -> httpx.Client:
    """The district's dispatch desk over /v1 (one token per test: minting another of the same name revokes it)."""
    return api.as_role("dispatcher")


def board(desk: httpx.Client) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = desk.get("/v1/board", params={"limit": 500}).json()["cases"]
    return cases


def case(desk: httpx.Client, case_id: str, position: int | None = None) -> dict[str, Any]:
    params = {"position": position} if position is not None else {}
    found: dict[str, Any] = desk.get(f"/v1/cases/{case_id}", params=params).json()["case"]
    return found


def test_the_catalogue_is_the_service_list_in_json_and_in_xml(api: Api) -> None:
    catalogue = api.service.backend.app.catalogue
    for fmt in FORMATS:
        services = {s["service_code"]: s for s in georeport(api, fmt).get_service_list()}
        assert set(services) == set(catalogue.categories)
        manhole = services["C0101"]
        assert manhole["service_name"] == "井盖缺失"
        assert manhole["metadata"] in (True, "true")
        assert manhole["type"] == "realtime"
        assert manhole["group"] == "部件/公用设施"
        assert "水务局" in manhole["keywords"] and "2 working hours" in manhole["description"]
        assert services["S0101"]["group"].startswith("民生服务/")


def test_a_service_definition_says_its_time_limit_and_unit_and_what_a_client_may_send(api: Api) -> None:
    for fmt in FORMATS:
        definition = georeport(api, fmt).get_service_definition("C0101")
        assert definition["service_code"] == "C0101"
        attributes = definition["attributes"] if fmt == "json" else definition["attributes"]["attribute"]
        by_code = {a["code"]: a for a in attributes}
        variable = {code for code, a in by_code.items() if a["variable"] in (True, "true")}
        assert variable == {"grid", "source", "occurred_at"}
        assert "2 working hours" in by_code["time_limit"]["description"]
        assert "水务局" in by_code["handling_unit"]["description"]
        assert by_code["grid"]["required"] in (False, "false")


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_unknown_service_code_is_an_open311_not_found(api: Api, fmt: str) -> None:
    with pytest.raises(requests.HTTPError) as raised:
        georeport(api, fmt).get_service_definition("Z9999")
    assert raised.value.response is not None and raised.value.response.status_code == 404
    [error] = errors(api.client().get(f"{ROOT}/services/Z9999.{fmt}"), fmt)
    assert int(error["code"]) == 404 and "Z9999" in error["description"]


def test_a_form_posted_report_becomes_a_case_the_georeport_client_reads_back(api: Api, desk: httpx.Client) -> None:
    token = api.token("reporter", COMMUNITY)
    fields = report(token, first_name="张", last_name="三", phone="13800000000", email="zs@example.cn", device_id="d1")
    response = post(api, fields)
    assert response.status_code == 201
    [created] = response.json()
    assert set(created) == {"service_request_id", "service_notice", "account_id"}
    assert created["account_id"] is None
    request_id = created["service_request_id"]
    for fmt in FORMATS:
        read = georeport(api, fmt).get_service_request(request_id)
        assert read["service_request_id"] == request_id
        assert read["status"] == "open"
        assert read["service_code"] == "C0102"
        assert read["description"] == "井盖破损, 有人绊倒"
        assert read["address_id"] == GRID
        assert float(read["lat"]) == float(LAT) and float(read["long"]) == float(LONG)
        assert "13800000000" not in str(read) and "张" not in str(read)
    recorded = case(desk, request_id)
    assert (recorded["grid"], recorded["source"], recorded["status"]) == (GRID, "app", "reported")


def test_a_repeated_post_with_the_same_idempotency_key_is_the_same_request(api: Api) -> None:
    token = api.token("reporter")
    first = post(api, report(token), key="k-1")
    before = events(api)
    again = post(api, report(token), fmt="xml", key="k-1")
    assert first.status_code == 201 and again.status_code == 200
    repeated = xmltodict.parse(again.content)["service_requests"]["request"]
    assert repeated["service_request_id"] == first.json()[0]["service_request_id"]
    assert events(api) == before
    other = post(api, report(token), key="k-2")
    assert other.json()[0]["service_request_id"] != first.json()[0]["service_request_id"]


def test_the_same_key_for_a_different_report_is_refused(api: Api) -> None:
    token = api.token("reporter")
    post(api, report(token), key="k-1")
    before = events(api)
    response = post(api, report(token, description="路灯不亮"), key="k-1")
    assert response.status_code == 409
    assert errors(response, "json")[0]["code"] == 409
    assert events(api) == before


def test_a_retried_report_without_a_key_is_the_same_request_but_another_device_is_not(api: Api) -> None:
    token = api.token("reporter")
    first = post(api, report(token, device_id="phone-1")).json()[0]["service_request_id"]
    retried = post(api, report(token, device_id="phone-1"))
    assert retried.status_code == 200 and retried.json()[0]["service_request_id"] == first
    elsewhere = post(api, report(token, device_id="phone-2")).json()[0]["service_request_id"]
    assert elsewhere != first


def test_a_request_is_open_until_its_case_is_closed_and_expects_the_deadline(api: Api, desk: httpx.Client) -> None:
    request_id = post(api, report(api.token("reporter"))).json()[0]["service_request_id"]
    dispatcher = desk
    registered = dispatcher.post(f"/v1/cases/{request_id}/register", json={"command_id": "o311-register"}).json()
    dispatched = case(desk, request_id, registered["position"])
    assert dispatched["status"] == "dispatched" and dispatched["deadline"]
    read = georeport(api).get_service_request(request_id)
    assert read["status"] == "open"
    assert datetime.fromisoformat(read["expected_datetime"]) == datetime.fromisoformat(dispatched["deadline"])
    if dispatched["worker"]:
        handler = api.as_role("grid_worker", actor=dispatched["worker"])
    else:
        handler = api.as_role("department", actor=dispatched["unit"])
    handler.post(f"/v1/cases/{request_id}/accept", json={"command_id": "o311-accept"}).raise_for_status()
    handled = {"command_id": "o311-handled", "result": "井盖已更换"}
    handler.post(f"/v1/cases/{request_id}/report_handling", json=handled).raise_for_status()
    verified = dispatcher.post(f"/v1/cases/{request_id}/verify", json={"command_id": "o311-verify", "passed": True})
    assert case(desk, request_id, verified.json()["position"])["status"] == "closed"
    for fmt in FORMATS:
        closed = georeport(api, fmt).get_service_request(request_id)
        assert closed["status"] == "closed"
        assert "closed (结案)" in closed["status_notes"]


def test_rejected_and_merged_requests_are_closed_and_say_what_happened(api: Api, desk: httpx.Client) -> None:
    token = api.token("reporter")
    kept = post(api, report(token, device_id="a")).json()[0]["service_request_id"]
    duplicate = post(api, report(token, device_id="b")).json()[0]["service_request_id"]
    refused = post(api, report(token, description="问物业费怎么交")).json()[0]["service_request_id"]
    dispatcher = desk
    dispatcher.post(f"/v1/cases/{duplicate}/merge", json={"command_id": "o311-merge", "into_case": kept})
    rejection = {"command_id": "o311-reject", "reason_code": "out_of_scope", "reason": "物业服务不属于城市管理"}
    answer = dispatcher.post(f"/v1/cases/{refused}/reject", json=rejection).json()
    case(desk, refused, answer["position"])
    read = {r["service_request_id"]: r for r in georeport(api).get_service_requests(f"{duplicate},{refused}")}
    assert {r["status"] for r in read.values()} == {"closed"}
    assert kept in read[duplicate]["status_notes"]
    assert "物业服务不属于城市管理" in read[refused]["status_notes"]


def test_requests_are_filtered_by_id_code_date_status_and_jurisdiction(api: Api, desk: httpx.Client) -> None:
    cases = board(desk)
    assert len(cases) > 20
    json_client, xml_client = georeport(api), georeport(api, "xml")

    def ids(found: Any) -> set[str]:
        return {r["service_request_id"] for r in listed(found)}

    everything = ids(json_client.get_service_requests())
    assert everything == {c["case_id"] for c in cases}
    closed = {c["case_id"] for c in cases if c["status"] in CLOSED_STATUSES}
    assert closed and ids(xml_client.get_service_requests(status="closed")) == closed
    assert ids(json_client.get_service_requests(status="open")) == everything - closed
    assert ids(json_client.get_service_requests(status="open,closed")) == everything
    assert all(c["status"] in OPEN for c in cases if c["case_id"] in everything - closed)

    codes = sorted({c["category"] for c in cases})[:2]
    by_code = {c["case_id"] for c in cases if c["category"] in codes}
    assert ids(xml_client.get_service_requests(service_code=",".join(codes))) == by_code

    reported = sorted(datetime.fromisoformat(c["reported_at"]) for c in cases)
    start, end = reported[len(reported) // 4], reported[len(reported) // 2]
    in_window = {c["case_id"] for c in cases if start <= datetime.fromisoformat(c["reported_at"]) <= end}
    window = json_client.get_service_requests(start_date=start.isoformat(), end_date=end.isoformat())
    assert ids(window) == in_window and len(in_window) >= 2

    two = sorted(closed)[:2]
    # The ids override every other filter: closed cases come back though status asks for open ones.
    assert ids(xml_client.get_service_requests(service_request_id=",".join(two), status="open")) == set(two)

    community = {c["case_id"] for c in cases if c["community"] == COMMUNITY}
    assert community and ids(georeport(api, "xml", COMMUNITY).get_service_requests()) == community
    assert ids(georeport(api, "json", DISTRICT).get_service_requests()) == everything


def test_a_query_over_more_than_ninety_days_is_an_open311_error(api: Api) -> None:
    start = datetime.fromisoformat("2026-07-01T00:00:00+08:00")
    params = {"start_date": start.isoformat(), "end_date": (start + timedelta(days=91)).isoformat()}
    for fmt in FORMATS:
        response = api.client().get(f"{ROOT}/requests.{fmt}", params=params)
        assert response.status_code == 400
        assert "90 days" in errors(response, fmt)[0]["description"]


@pytest.mark.parametrize(
    ("fields", "status", "words"),
    [
        ({"service_code": "Z9999"}, 400, "service_code"),
        ({"lat": "north"}, 400, "lat"),
        ({"lat": "95"}, 400, "latitude"),
        ({"long": ""}, 400, "long"),
        ({"lon": LONG}, 400, "lon"),
        ({"api_key": ""}, 401, "api_key"),
        ({"api_key": "glt_not-a-token"}, 403, "token file"),
        ({"description": ""}, 400, "description"),
        ({"description": "", "address_string": "东峰山路 1 号"}, 400, "description"),
        ({"lat": "", "long": "", "address_string": "东峰山路 1 号"}, 400, "address_string"),
        ({"attribute[colour]": "red"}, 400, "attribute[colour]"),
        ({"attribute[grid]": "999999999999999"}, 400, "grid"),
    ],
)
def test_a_bad_report_is_an_open311_error_and_records_nothing(
    api: Api, fields: dict[str, str], status: int, words: str
) -> None:
    token = api.token("reporter")
    before = events(api)
    for fmt in FORMATS:
        response = post(api, report(token, **fields), fmt)
        assert response.status_code == status
        [error] = errors(response, fmt)
        assert int(error["code"]) == status and words in error["description"]
    assert events(api) == before


@pytest.mark.parametrize("role", ["auditor", "analyst", "supervisor"])
def test_a_token_without_report_rights_may_not_post(api: Api, role: str) -> None:
    before = events(api)
    response = post(api, report(api.token(role)))
    assert response.status_code == 403
    assert "may not report" in errors(response, "json")[0]["description"]
    assert events(api) == before


def test_a_place_outside_the_reporters_jurisdiction_is_refused(api: Api) -> None:
    token = api.token("reporter", OTHER_COMMUNITY)
    before = events(api)
    for fields in ({}, {"lat": "", "long": "", "attribute[grid]": GRID}):
        response = post(api, report(token, **fields), "xml")
        assert response.status_code == 403
        assert "outside the jurisdiction" in errors(response, "xml")[0]["description"]
    assert events(api) == before
    assert post(api, report(api.token("reporter", COMMUNITY))).status_code == 201


def test_a_bad_api_key_is_logged_without_the_key(api: Api) -> None:
    secret = "glt_this-is-not-a-token"
    with structlog.testing.capture_logs() as logs:
        response = post(api, report(secret))
    assert response.status_code == 403
    refusals = [entry for entry in logs if entry["event"] == "access_denied"]
    assert refusals and refusals[0]["status"] == 403
    assert all(secret not in str(entry) for entry in logs)


def test_without_public_reads_a_reader_needs_a_key_and_sees_only_its_scope(api: Api, desk: httpx.Client) -> None:
    api.service.backend.open311_public_reads = False
    path = f"{ROOT}/requests.json"
    assert api.client().get(path).status_code == 401
    assert api.client().get(path, params={"api_key": "glt_nope"}).status_code == 403
    assert api.client(api.token("reporter")).get(path).status_code == 403  # reporters read no board
    cases = board(desk)
    community = {c["case_id"] for c in cases if c["community"] == COMMUNITY}
    key = api.token("dispatcher", COMMUNITY)
    by_query = api.client().get(path, params={"api_key": key})
    assert {r["service_request_id"] for r in by_query.json()} == community
    by_header = api.client(key)
    assert {r["service_request_id"] for r in by_header.get(path).json()} == community
    assert by_header.get(path, params={"jurisdiction_id": OTHER_COMMUNITY}).status_code == 403
    other = next(c["case_id"] for c in cases if c["community"] != COMMUNITY)
    assert by_header.get(f"{ROOT}/requests/{other}.json").status_code == 403


def test_a_description_with_control_characters_still_reads_as_xml(api: Api) -> None:
    created = post(api, report(api.token("reporter"), description="铃声\x07响了"))
    read = georeport(api, "xml").get_service_request(created.json()[0]["service_request_id"])
    assert read["description"] == "铃声响了"


def test_an_unknown_format_or_request_is_an_open311_not_found(api: Api) -> None:
    client = api.client()
    assert client.get(f"{ROOT}/services.csv").json()[0]["code"] == 404
    missing = client.get(f"{ROOT}/requests/00000000-0000-0000-0000-000000000000.xml")
    assert missing.status_code == 404 and errors(missing, "xml")[0]["code"] == "404"
    assert client.get(f"{ROOT}/requests.json", params={"service_request_id": "nope"}).status_code == 400
    assert client.get(f"{ROOT}/requests.json", params={"status": "pending"}).status_code == 400
    assert client.get(f"{ROOT}/requests.json", params={"jurisdiction_id": "999"}).status_code == 400
