"""The two ASGI applications a gateway serves: the user API (bearer tokens) and the agent endpoint
(mutual TLS, checked by the TLS layer before a request reaches it)."""

from __future__ import annotations

from fastapi import FastAPI

from keyhole.gateway.api.error_answers import install_error_handlers
from keyhole.gateway.api.refusals import record_refusal
from keyhole.gateway.api.routes import access as routes_access
from keyhole.gateway.api.routes import agents as routes_agents
from keyhole.gateway.api.routes import audit as routes_audit
from keyhole.gateway.api.routes import auth as routes_auth
from keyhole.gateway.api.routes import enroll as routes_enroll
from keyhole.gateway.api.routes import events as routes_events
from keyhole.gateway.api.routes import link as routes_link
from keyhole.gateway.api.routes import policy as routes_policy
from keyhole.gateway.api.routes import probes as routes_probes
from keyhole.gateway.api.routes import sessions as routes_sessions
from keyhole.gateway.api.routes import users as routes_users
from keyhole.gateway.context import GatewayContext
from keyhole.version import __version__


def create_user_app(context: GatewayContext) -> FastAPI:
    app = FastAPI(
        title="keyhole gateway",
        version=__version__,
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
        return {"status": "ok", "version": __version__}

    return app


def create_agent_app(context: GatewayContext) -> FastAPI:
    app = FastAPI(title="keyhole gateway: agent endpoint", version=__version__, docs_url=None, redoc_url=None)
    app.state.gateway = context
    install_error_handlers(app)
    app.include_router(routes_link.router)

    @app.get("/v1/agent/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
