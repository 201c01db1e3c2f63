"""The two ASGI applications a gateway serves: the user API (bearer tokens) and the agent endpoint
(mutual TLS, checked by the TLS layer before a request reaches it)."""

from __future__ import annotations

from fastapi import FastAPI

import keyhole
from keyhole.gateway import (
    routes_access,
    routes_agents,
    routes_audit,
    routes_auth,
    routes_enroll,
    routes_events,
    routes_link,
    routes_policy,
    routes_probes,
    routes_sessions,
    routes_users,
)
from keyhole.gateway.api_errors import install_error_handlers
from keyhole.gateway.context import GatewayContext
from keyhole.gateway.refusals import record_refusal


def create_user_app(context: GatewayContext) -> FastAPI:
    app = FastAPI(
        title="keyhole gateway",
        version=keyhole.__version__,
        description="The one door between engineers and the agents inside their services.",
        docs_url=None,  # the interactive docs page loads its assets from a CDN (rule 6: local only)
        redoc_url=None,
    )
    app.state.gateway = context
    install_error_handlers(app, record_refusal)
    app.include_router(routes_auth.router)
    app.include_router(routes_users.router)
    app.include_router(routes_enroll.router)
    app.include_router(routes_agents.router)
    app.include_router(routes_sessions.router)
    app.include_router(routes_probes.router)
    app.include_router(routes_events.router)
    app.include_router(routes_audit.router)
    app.include_router(routes_access.router)
    app.include_router(routes_policy.router)

    @app.get("/v1/health", tags=["health"])
    def health() -> dict[str, str]:
        return {"status": "ok", "version": keyhole.__version__}

    return app


def create_agent_app(context: GatewayContext) -> FastAPI:
    app = FastAPI(title="keyhole gateway: agent endpoint", version=keyhole.__version__, docs_url=None, redoc_url=None)
    app.state.gateway = context
    install_error_handlers(app)
    app.include_router(routes_link.router)

    @app.get("/v1/agent/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
