"""Every 403 is recorded in the audit log before it is answered: who was refused, what, and why. It
is done once, where errors become answers, so that no route can forget it."""

from __future__ import annotations

import logging

from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from keyhole.gateway.audit.log import append
from keyhole.gateway.context import GatewayContext
from keyhole.gateway.errors import ApiError, Forbidden
from keyhole.gateway.identity.tokens import Caller

_log = logging.getLogger("keyhole.gateway")
_CALLER = "keyhole_caller"


def remember_caller(request: Request, who: Caller) -> None:
    """Called once the bearer token is checked, so that a refusal can name who was refused."""
    setattr(request.state, _CALLER, who)


def _route(request: Request) -> str:
    route = request.scope.get("route")
    return f"{request.method} {getattr(route, 'path', request.url.path)}"


def _record(context: GatewayContext, who: Caller, action: str, route: str, reason: str) -> None:
    # A transaction of its own: the refused action's transaction, if it had one, has rolled back.
    with context.audited() as db:
        append(db, f"user:{who.name}", "access.denied", refused=action, route=route, reason=reason)


async def record_refusal(request: Request, exc: ApiError) -> None:
    who = getattr(request.state, _CALLER, None)
    if not isinstance(who, Caller):
        return  # no user was identified (an agent's request): there is nobody to name
    route = _route(request)
    action = exc.action if isinstance(exc, Forbidden) and exc.action else route
    context: GatewayContext = request.app.state.gateway
    try:
        await run_in_threadpool(_record, context, who, action, route, str(exc))
    except SQLAlchemyError as error:
        # The refusal stands either way; that it went unrecorded must not pass quietly.
        _log.error("could not record a refusal of %s for %s: %s", action, who.name, type(error).__name__)
