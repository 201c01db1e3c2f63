"""Who is calling: the bearer access token of every user request, checked against its login."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from keyhole.gateway.api_errors import ApiError
from keyhole.gateway.context import GatewayContext
from keyhole.gateway.errors import AuthError
from keyhole.gateway.tokens import Caller, authenticate

_bearer = HTTPBearer(auto_error=False, description="An access token from POST /v1/auth/login.")


async def gateway(request: Request) -> GatewayContext:
    """A coroutine, as it never blocks: FastAPI would run a plain function on the thread pool, a hop
    for every agent poll."""
    return _context(request)


def _context(request: Request) -> GatewayContext:
    context: GatewayContext = request.app.state.gateway
    return context


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if credentials is None:
        raise AuthError("missing bearer token; log in first: keyhole login")
    context = _context(request)
    with context.transaction() as db:
        return authenticate(db, context.token_key, credentials.credentials)


def admin(who: Annotated[Caller, Depends(caller)]) -> Caller:
    if who.role != "admin":
        raise ApiError(403, f"user {who.name!r} is not an admin; ask an admin to do this")
    return who


Gateway = Annotated[GatewayContext, Depends(gateway)]
AnyUser = Annotated[Caller, Depends(caller)]
Admin = Annotated[Caller, Depends(admin)]
