"""Commands over HTTP: one POST per command, each through the same command path as the CLI and the policies."""

# No ``from __future__ import annotations`` here: FastAPI reads the handlers' annotations at run time, and
# the request bodies are models built from the command dataclasses below.

import dataclasses
import json
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.responses import Response

from engine.application import CommandResult
from engine.commands import COMMANDS, CaseCommand, Command, ReportCase
from engine.parsing import command_fields, parse_command
from projections.api import models
from projections.api.access import CASE_COMMANDS, Principal
from projections.api.backend import Backend, Submitted
from projections.api.places import Places, check_command
from projections.api.security import Caller

FROM_CALLER = frozenset({"actor", "policy", "policy_version"})
"""Fields no request body sets: the actor is the calling principal, and only a process manager in the engine
names itself as a policy (a person's decision over HTTP is always recorded as that person's)."""


class Gate:
    """Authorise, then run, one command at a time.

    One lock (the backend's): the write side's intake and the policies keep in-process state, and SQLite
    takes one writer at a time anyway. Authorisation reads the event store (not the views), so a case
    reported a moment ago is already placed in the tree and assigned.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.places = Places(backend.app)

    def run(self, principal: Principal, command: Command) -> Submitted:
        with self.backend.write_lock:
            check_command(self.places, principal, command)
            return self.backend.execute(command)


def body_model(name: str, command: type[Command]) -> type[BaseModel]:
    """A request body for one command: its own fields (the case id comes from the path, the actor from the token)."""
    spec: dict[str, Any] = {}
    for f in dataclasses.fields(command):
        if f.name in FROM_CALLER or (f.name == "case_id" and issubclass(command, CaseCommand)):
            continue
        hint = _aware(command_fields(command)[f.name][0])
        if f.default is not dataclasses.MISSING:
            spec[f.name] = (hint, Field(default=f.default))
        elif f.default_factory is not dataclasses.MISSING:
            spec[f.name] = (hint, Field(default_factory=f.default_factory))
        else:
            spec[f.name] = (hint, ...)
    title = "".join(part.capitalize() for part in name.split("_")) + "Body"
    model: type[BaseModel] = create_model(
        title, __config__=ConfigDict(extra="forbid"), __doc__=(command.__doc__ or name).strip(), **spec
    )
    return model


def _aware(hint: Any) -> Any:
    """A time in a body carries its UTC offset and lies within range: else it is refused as a malformed request,
    before the engine sees it."""
    if hint is datetime:
        return models.Moment
    if hint == datetime | None:
        return models.Moment | None
    return hint


def accepted(submitted: Submitted, case_id: UUID | None) -> dict[str, Any]:
    result: CommandResult = submitted.result
    return {
        "command_id": result.command_id,
        "case_id": str(case_id) if case_id is not None else None,
        "aggregate_id": str(result.aggregate_id),
        "position": result.position,
        "events": list(result.events),
        "duplicate": result.duplicate,
        "policies": list(submitted.policies),
    }


def router(backend: Backend) -> APIRouter:
    """POST /v1/cases (上报), POST /v1/cases/{case_id}/{command} for each case command, POST /v1/commands/{command}
    for the reference model and patrols; GET /v1/commands lists what the caller may issue."""
    api = APIRouter(prefix="/v1", tags=["commands"])
    gate = Gate(backend)
    responses: dict[int | str, dict[str, Any]] = {
        code: {"model": models.Problem, "content": {"application/problem+json": {}}}
        for code in (401, 403, 404, 409, 422)
    }

    @api.get("/commands", summary="The commands the caller may issue, with their fields")
    async def commands(principal: Caller) -> dict[str, Any]:
        listed = {}
        for name in principal.commands():
            fields = command_fields(COMMANDS[name])
            listed[name] = {k: ("required" if req else "optional") for k, (_, req) in fields.items() if k != "actor"}
        return {"commands": listed}

    for name, command in COMMANDS.items():
        model = body_model(name, command)
        if name == ReportCase.name:
            path, status = "/cases", 201
        elif name in CASE_COMMANDS:
            path, status = f"/cases/{{case_id}}/{name}", 200
        else:
            path, status = f"/commands/{name}", 200
        api.add_api_route(
            path,
            _handler(gate, name, model, Caller, status, case=name in CASE_COMMANDS),
            methods=["POST"],
            status_code=status,
            response_model=models.CommandAccepted,
            responses=responses,
            summary=(command.__doc__ or name).strip().splitlines()[0],
            operation_id=f"command_{name}",
        )
    return api


def _handler(gate: Gate, name: str, model: type[BaseModel], caller: Any, status: int, *, case: bool) -> Any:
    """The endpoint for one command: body → command (the engine's own parser) → gate → the result."""

    def run(principal: Principal, body: BaseModel, case_id: UUID | None) -> Response:
        data = body.model_dump(exclude_unset=True)
        data["actor"] = principal.actor
        if case_id is not None:
            data["case_id"] = case_id
        command = parse_command(name, data)
        submitted = gate.run(principal, command)
        touched = case_id if case_id is not None else (submitted.result.aggregate_id if name == "report" else None)
        code = 200 if submitted.result.duplicate else status
        return Response(
            json.dumps(accepted(submitted, touched), ensure_ascii=False), code, media_type="application/json"
        )

    if case:

        def case_endpoint(
            case_id: Annotated[UUID, Path(description="The case's id")],
            body: model,  # type: ignore[valid-type]
            principal: caller,
        ) -> Response:
            return run(principal, body, case_id)

        return case_endpoint

    def endpoint(body: model, principal: caller) -> Response:  # type: ignore[valid-type]
        return run(principal, body, None)

    return endpoint
