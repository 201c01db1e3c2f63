"""Who is calling: the bearer access token of every user request, checked against its login."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from keyhole.gateway.access.permissions import require
from keyhole.gateway.api.refusals import remember_caller
from keyhole.gateway.context import GatewayContext
from keyhole.gateway.errors import AuthError
from keyhole.gateway.identity.tokens import Caller, authenticate

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
        who = authenticate(db, context.token_key, credentials.credentials)
    remember_caller(request, who)
    return who


def _holding(ability: str) -> Callable[[Request, Caller], Caller]:
    def check(request: Request, who: Annotated[Caller, Depends(caller)]) -> Caller:
        require(_context(request), who, ability)
        return who

    return check


Gateway = Annotated[GatewayContext, Depends(gateway)]
AnyUser = Annotated[Caller, Depends(caller)]
# Callers holding one admin ability (policy `admin: [...]`; without a policy, the admins).
UsersAdmin = Annotated[Caller, Depends(_holding("users"))]
EnrollmentAdmin = Annotated[Caller, Depends(_holding("enrollment"))]
PolicyAdmin = Annotated[Caller, Depends(_holding("policy"))]
AuditReader = Annotated[Caller, Depends(_holding("audit"))]
