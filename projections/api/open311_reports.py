"""Open311 GeoReport v2 reports (POST requests): form fields → a ReportCase through the API's one command gate."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC
from typing import TYPE_CHECKING, Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from engine.commands import ReportCase
from engine.errors import DuplicateCommand, InvalidCommand
from engine.parsing import parse_command
from projections.api.access import Principal
from projections.api.backend import Submitted
from projections.api.open311_xml import Open311Error
from projections.api.places import place_of
from projections.api.problems import AccessDenied
from projections.api.reads import Reader, case_position

if TYPE_CHECKING:
    from projections.api.open311 import GeoReport

MAX_DESCRIPTION = 4000
MAX_IDEMPOTENCY_KEY = 255
FORM_FIELDS = frozenset(
    {
        "api_key", "jurisdiction_id", "service_code", "lat", "long", "address_string", "address_id", "email",
        "device_id", "account_id", "first_name", "last_name", "phone", "description", "media_url",
    }
)  # fmt: skip
ATTRIBUTE = re.compile(r"attribute\[([^\]]*)\](?:\[\])?")
VARIABLE_ATTRIBUTES = ("grid", "source", "occurred_at")
SOURCES: Mapping[str, str] = {
    "app": "手机端: a resident's app (the default)",
    "hotline": "12345 热线: the hotline",
    "resident": "居民: a resident at the door",
    "sensor": "智能感知: a sensor",
}
"""The case sources an Open311 client may claim (attribute[source]); patrols and departments have their own paths."""
OPEN311_NAMES: Mapping[str, str] = {
    "lon": "long", "category": "service_code", "grid": "attribute[grid]", "source": "attribute[source]",
    "occurred_at": "attribute[occurred_at]", "reporter": "first_name, last_name, email, phone",
}  # fmt: skip
"""The engine's field names as a GeoReport client knows them, for error messages."""


class Reports:
    """上报 by GeoReport v2: a form becomes a ReportCase, run through the same gate as POST /v1/cases."""

    def __init__(self, geo: GeoReport) -> None:
        self.geo = geo

    async def create(self, request: Request, fmt: str) -> tuple[list[dict[str, Any]], int]:
        """上报 through the same gate as POST /v1/cases; answers once the views hold the case (bounded)."""
        try:
            form = await request.form()
        except Exception as exc:  # any unreadable body is the client's error, never a 500
            raise InvalidCommand("body", f"is unreadable ({type(exc).__name__})", "form-encoded fields") from None
        principal = self.geo.authenticate(request, form_text(form, "api_key") or credentials(request))
        if not principal.may_issue(ReportCase.name):
            raise AccessDenied(f"role {principal.role.value} may not report", principal.commands())
        command = self.report(request, principal, form)
        try:
            submitted = await run_in_threadpool(self.submit, principal, command, form_text(form, "jurisdiction_id"))
        except InvalidCommand as exc:
            raise renamed(exc) from None
        except DuplicateCommand as exc:
            raise Open311Error(409, f"the Idempotency-Key was used for a different report ({exc})") from None
        result = submitted.result
        probe = case_position(self.geo.backend, str(result.aggregate_id), result.position)
        await Reader(self.geo.backend).settle(result.position, None, probe)
        category = self.geo.category(command.category)
        said = "already received" if result.duplicate else "received"
        notice = f"{said} as case {str(result.aggregate_id)[:8]}; {self.geo.notice(category)}"
        body = [{"service_request_id": str(result.aggregate_id), "service_notice": notice, "account_id": None}]
        return body, 200 if result.duplicate else 201

    def report(self, request: Request, principal: Principal, form: FormData) -> ReportCase:
        unknown = sorted(key for key in form if key not in FORM_FIELDS and not ATTRIBUTE.fullmatch(key))
        if unknown:
            allowed = ", ".join([*sorted(FORM_FIELDS), "attribute[code]"])
            raise InvalidCommand(unknown[0], "is not a field of a GeoReport v2 request", allowed)
        code = form_text(form, "service_code")
        if not code:
            raise InvalidCommand("service_code", "is missing", "a service_code from GET services")
        self.geo.category(code)
        attributes = form_attributes(form)
        lat, lon = coordinate(form, "lat", "latitude", 90.0), coordinate(form, "long", "longitude", 180.0)
        if (lat is None) != (lon is None):
            raise InvalidCommand("lat" if lat is None else "long", "is missing", "both lat and long, or neither")
        grid, address_id = attributes.get("grid", ""), form_text(form, "address_id")
        if grid and address_id and grid != address_id:
            raise InvalidCommand("address_id", f"{address_id!r} is not attribute[grid] {grid!r}", "the same grid code")
        grid = grid or address_id
        if lat is None and not grid:
            where = "lat and long, or attribute[grid] (a grid code); an address_string alone is not located"
            raise InvalidCommand("lat", "is missing, and so are long and attribute[grid]", where)
        source = attributes.get("source") or "app"
        if source not in SOURCES:
            raise InvalidCommand("attribute[source]", f"{source!r} is not a source", ", ".join(SOURCES))
        description, address = form_text(form, "description"), form_text(form, "address_string")
        if not description:  # checked before the address joins it: the desk needs words about the problem
            raise InvalidCommand("description", "is missing", "what was seen or asked, in words")
        if address:
            description = f"{description}\n地址 address: {address}"
        if len(description) > MAX_DESCRIPTION:
            raise InvalidCommand("description", f"has {len(description)} characters", f"at most {MAX_DESCRIPTION}")
        email = form_text(form, "email")
        contact = [form_text(form, "first_name"), form_text(form, "last_name"), f"<{email}>" if email else ""]
        contact.append(form_text(form, "phone"))
        data = {
            "command_id": "open311", "actor": principal.actor, "source": source, "category": code,
            "description": description, "grid": grid, "reporter": " ".join(part for part in contact if part),
            "lon": lon, "lat": lat, "occurred_at": attributes.get("occurred_at") or None,
        }  # fmt: skip
        try:
            command = parse_command(ReportCase.name, data)
        except InvalidCommand as exc:
            raise renamed(exc) from None
        assert isinstance(command, ReportCase)
        return dataclasses.replace(command, command_id=self.command_id(request, principal, form, command))

    def command_id(self, request: Request, principal: Principal, form: FormData, command: ReportCase) -> str:
        """The Idempotency-Key (per principal), else a digest of the caller, its device, the day and the report."""
        key = request.headers.get("idempotency-key")
        if key is not None:
            key = key.strip()
            if not key or len(key) > MAX_IDEMPOTENCY_KEY:
                raise InvalidCommand(
                    "Idempotency-Key", "is empty or too long", f"1 to {MAX_IDEMPOTENCY_KEY} characters"
                )
            return f"open311:{principal.name}:{key}"
        # The day keeps a report of the same trouble a week later (same text, same spot) a new case.
        day = self.geo.backend.now().astimezone(UTC).date().isoformat()
        parts = [principal.name, form_text(form, "device_id"), day, command.fingerprint()]
        return "open311:" + hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()[:32]

    def submit(self, principal: Principal, command: ReportCase, jurisdiction: str) -> Submitted:
        """Run the report through the gate; the write side (not the views) says where it lands."""
        with self.geo.backend.write_lock:
            if command.grid and self.geo.places.level(command.grid) != "grid":  # the gate would call it "outside" (403)
                raise InvalidCommand("grid", f"{command.grid!r} is not a grid", "a grid code, e.g. 140827100001001")
            if jurisdiction:
                place = place_of(self.geo.backend.app, command)
                if jurisdiction not in self.geo.places.above(place):
                    raise InvalidCommand("jurisdiction_id", f"the place {place} is not inside {jurisdiction}",
                                         "a division the place is in, or no jurisdiction_id")  # fmt: skip
            return self.geo.gate.run(principal, command)


def form_schema() -> dict[str, Any]:
    text = {"type": "string"}
    fields: dict[str, Any] = {name: text for name in sorted(FORM_FIELDS)}
    fields.update({f"attribute[{code}]": text for code in VARIABLE_ATTRIBUTES})
    schema = {"type": "object", "properties": fields, "required": ["api_key", "service_code"]}
    return {"content": {"application/x-www-form-urlencoded": {"schema": schema}}}


def renamed(exc: InvalidCommand) -> InvalidCommand:
    """The engine's complaint about a field, naming the field as the client sent it."""
    return InvalidCommand(OPEN311_NAMES.get(exc.field, exc.field), exc.problem, exc.expected)


def form_attributes(form: FormData) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in form.multi_items():
        match = ATTRIBUTE.fullmatch(key)
        if match is None:
            continue
        code = match.group(1)
        if code not in VARIABLE_ATTRIBUTES:
            raise InvalidCommand(
                f"attribute[{code}]", "is not an attribute a client sends", ", ".join(VARIABLE_ATTRIBUTES)
            )
        found[code] = value.strip() if isinstance(value, str) else ""
    return found


def coordinate(form: FormData, name: str, what: str, limit: float) -> float | None:
    text = form_text(form, name)
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not -limit <= number <= limit:  # NaN and infinities fail too
        raise InvalidCommand(name, f"{text!r} is not a {what}", f"WGS84 degrees, -{limit:g} to {limit:g}")
    return number


def form_text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def credentials(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
