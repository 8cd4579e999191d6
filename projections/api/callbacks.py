"""The call-back queue over HTTP (回访任务): GET /v1/callbacks, for the desk, supervision and audit."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.responses import Response

from projections.api import models
from projections.api.access import Read
from projections.api.backend import Backend
from projections.api.reads import MAX_PAGE, Now, Position, Reader, Wait, answer, plain, scope_of
from projections.api.security import Caller, require
from projections.callbacks import callback_queue
from projections.projection import iso


class CallbackTask(BaseModel):
    """One closed case awaiting its call-back (回访)."""

    case_id: str
    short_id: str
    source: str = Field(description="resident, hotline or app: only residents' cases are called back")
    reporter: str = Field(description="Whom to call: the reporter given with the case, else the reporting actor")
    grid: str
    category: str
    closed_at: str
    due_at: str = Field(description="Call back by: the catalogue's call_back_within_days working days after closing")
    attempts: int = Field(description="Call-back attempts that did not reach the resident (回访未果)")
    last_attempt_at: str | None
    last_reason: str = Field(description="no_answer, unreachable, wrong_number, refused; empty before any miss")
    overdue: bool = Field(description="The due time has passed at `now`")
    position: int


class CallbackPage(BaseModel):
    """Closed cases awaiting a call-back, soonest due first."""

    tasks: list[CallbackTask]
    now: str
    consistency: models.Consistency


def router(backend: Backend) -> APIRouter:
    """The call-back endpoint under /v1."""
    api = APIRouter(prefix="/v1", tags=["views"])
    reader = Reader(backend)
    problems: dict[int | str, dict[str, Any]] = {
        code: {"model": models.Problem, "content": {"application/problem+json": {}}} for code in (401, 403, 422)
    }

    @api.get(
        "/callbacks", response_model=CallbackPage, responses=problems, summary="回访任务: closed cases to call back"
    )
    async def callbacks(
        principal: Caller,
        overdue: Annotated[bool, Query(description="Only tasks past their due time at `now`")] = False,
        due_before: Annotated[models.Moment | None, Query(description="Only tasks due before this time")] = None,
        now: Now = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        position: Position = None,
        wait: Wait = None,
    ) -> Response:
        require(principal, Read.CALLBACKS)
        consistency = await reader.settle(position, wait)
        moment = reader.now(now)
        tasks = callback_queue(
            backend.views, now=moment, due_before=due_before, overdue=overdue, scope=scope_of(principal), limit=limit
        )
        return answer({"tasks": [plain(t) for t in tasks], "now": iso(moment)}, consistency)

    return api
