"""Who is calling: the bearer token → principal dependency, and the log line every refusal leaves."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from projections.api.access import Principal, Read
from projections.api.backend import Backend
from projections.api.problems import AccessDenied, Unauthenticated

bearer = HTTPBearer(auto_error=False, description="A token from `gridloop token add` (only its hash is stored)")


async def current_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> Principal:
    """The calling principal, or a refusal (401) of a missing or unknown token."""
    if credentials is None:
        raise Unauthenticated("no bearer token: send Authorization: Bearer <token>")
    backend: Backend = request.app.state.backend
    found = backend.tokens.authenticate(credentials.credentials)
    if found is None:
        raise Unauthenticated("the bearer token is not in the token file (revoked, or never issued)")
    request.state.principal = found
    return found


Caller = Annotated[Principal, Depends(current_principal)]
"""A handler parameter of this type is the authenticated caller."""


def require(principal: Principal, what: Read) -> None:
    """Refuse a read the principal's role does not include."""
    if not principal.may_read(what):
        raise AccessDenied(
            f"role {principal.role.value} may not read {what.value}", [r.value for r in Read if principal.may_read(r)]
        )
