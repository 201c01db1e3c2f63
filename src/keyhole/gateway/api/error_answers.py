"""Every error the API returns is JSON `{"error": "<one line>"}` with a fitting status: a client can
show it as it is, and nothing (no traceback, no stored value) leaks through it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keyhole.gateway.errors import ApiError, AuthError, GatewayError

_log = logging.getLogger("keyhole.gateway")


# Records a refusal before it is answered: (request, the refusal).
RefusalRecorder = Callable[[Request, ApiError], Awaitable[None]]


def _body(message: str) -> dict[str, str]:
    return {"error": message}


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for error in exc.errors()[:3]:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(problems)


def install_error_handlers(app: FastAPI, record_refusal: RefusalRecorder | None = None) -> None:
    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        if exc.status == 403 and record_refusal is not None:
            await record_refusal(request, exc)
        return JSONResponse(_body(str(exc)), status_code=exc.status)

    @app.exception_handler(AuthError)
    async def _auth(_: Request, exc: AuthError) -> JSONResponse:
        return JSONResponse(_body(str(exc)), status_code=401, headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(GatewayError)
    async def _refused(_: Request, exc: GatewayError) -> JSONResponse:
        # Any other GatewayError is a request the caller can fix; its message says how.
        return JSONResponse(_body(str(exc)), status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(_body(_validation_message(exc)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(_body(str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    app.add_middleware(_QuietServerErrors)


class _QuietServerErrors:
    """Answers an unexpected error with a one-line 500 and logs the exception's type only. Starlette's
    own handler re-raises, and uvicorn would then log the traceback, whose text can carry request
    values or database parameters (password hashes)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            _log.error("internal error on %s %s: %s", scope.get("method"), scope.get("path"), type(exc).__name__)
            if not started:
                response = JSONResponse(_body("internal error (the gateway logged its type); please report it"), 500)
                await response(scope, receive, send)
