"""Debug sessions: open, list, show, close."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from keyhole.gateway.access.permissions import check_session, grant_still_live, observer, still_in_force
from keyhole.gateway.access.policy import LONGEST_SESSION
from keyhole.gateway.agents import instances
from keyhole.gateway.api.callers import AnyUser, Gateway
from keyhole.gateway.api.routes.enroll import ServiceName, seconds
from keyhole.gateway.audit.log import append
from keyhole.gateway.context import GatewayContext
from keyhole.gateway.errors import ApiError
from keyhole.gateway.identity.tokens import Caller
from keyhole.gateway.sessions import debug_sessions as sessions
from keyhole.gateway.storage.models import DebugSession, ProbeRecord, ProbeStatus, User

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])
# How long closing waits for the connected agents to confirm they removed the session's probes.
ACK_WAIT = 5.0


class SessionRequest(BaseModel):
    service: ServiceName
    reason: str = Field(min_length=1, max_length=sessions.MAX_REASON)
    ttl: float | str | None = Field(default=None, description="e.g. 15m (the default); at most 1h")


class SessionOut(BaseModel):
    id: str
    user: str
    service: str
    reason: str
    created_at: float
    expires_at: float
    ended_at: float | None
    end_reason: str | None
    state: str
    instances: int = Field(description="agent instances of the service connected now")


class Closed(BaseModel):
    session: SessionOut
    holding: int = Field(description="connected instances that have not yet confirmed removing the probes")
    unreachable: int = Field(
        description="instances holding probes that are not connected (the dead-man switch removes them)"
    )


_ENDED_STATES = {"closed": "closed", sessions.ACCESS_REVOKED: "revoked", sessions.POLICY_CHANGED: "revoked"}


def _out(context: GatewayContext, row: DebugSession, user: str, instance_ids: list[str]) -> SessionOut:
    if row.ended_at is not None:
        state = {"closed": "closed", sessions.ACCESS_REVOKED: "revoked", sessions.POLICY_CHANGED: "revoked"}.get(
            row.end_reason or "", "expired"
        )
    else:
        state = "open" if row.expires_at > time.time() else "expired"
    connected = sum(1 for i in instance_ids if context.connections.connected(i))
    return SessionOut(
        id=row.id,
        user=user,
        service=row.service,
        reason=row.reason,
        created_at=row.created_at,
        expires_at=row.expires_at,
        ended_at=row.ended_at,
        end_reason=row.end_reason,
        state=state,
        instances=connected,
    )


def _user_name(db: Session, user_id: int) -> str:
    user = db.get(User, user_id)
    return user.name if user is not None else "?"


@router.post("", status_code=201)
def open_session(body: SessionRequest, who: AnyUser, context: Gateway) -> SessionOut:
    ttl = seconds(body.ttl, sessions.DEFAULT_TTL, LONGEST_SESSION, "session ttl")
    checked = context.policy
    grant = check_session(context, who, body.service, ttl)
    with context.audited() as db:
        still_in_force(context, checked)
        if not grant_still_live(db, grant.grant_id):
            raise ApiError(409, "the access grant this session needed was revoked or ended a moment ago")
        row = sessions.open_session(
            db, who, body.service, body.reason, ttl, max_ttl=grant.max_session, grant_id=grant.grant_id
        )
        append(db, f"user:{who.name}", "session.open", session=row.id, service=row.service, reason=row.reason, ttl=ttl)
        ids = [i.id for i in instances.service_instances(db, row.service)]
    return _out(context, row, who.name, ids)


@router.get("")
def list_sessions(who: AnyUser, context: Gateway, everyone: bool = False) -> list[SessionOut]:
    """Your sessions, newest first; with `everyone`, also the sessions you observe."""
    with context.transaction() as db:
        rows = sessions.sessions_of(db, who, observer(context, who) if everyone else sessions.only_own)
        names = {u.id: u.name for u in db.scalars(select(User))}
        by_service = {s: [i.id for i in instances.service_instances(db, s)] for s in {r.service for r in rows}}
    return [_out(context, r, names.get(r.user_id, "?"), by_service[r.service]) for r in rows]


@router.get("/{session_id}")
def show_session(session_id: str, who: AnyUser, context: Gateway) -> SessionOut:
    with context.transaction() as db:
        row = sessions.visible_session(db, who, session_id, observer(context, who))
        ids = [i.id for i in instances.service_instances(db, row.service)]
        owner = _user_name(db, row.user_id)
    return _out(context, row, owner, ids)


def _close(context: GatewayContext, who: Caller, session_id: str) -> tuple[DebugSession, str, list[str]]:
    with context.audited() as db:
        row = sessions.visible_session(db, who, session_id, observer(context, who))
        append(db, f"user:{who.name}", "session.close", session=row.id, service=row.service)
        sessions.end_session(db, row, "closed")
        ids = [i.id for i in instances.service_instances(db, row.service)]
        owner = _user_name(db, row.user_id)
    context.probe_sets.bump(row.service)
    context.session_events.bump(row.id)
    return row, owner, ids


def _holding(context: GatewayContext, session_id: str) -> list[str]:
    """Instances whose last report says they still hold one of the session's probes."""
    with context.transaction() as db:
        rows = db.scalars(
            select(ProbeStatus.instance_id)
            .join(ProbeRecord, ProbeRecord.id == ProbeStatus.probe_id)
            .where(ProbeRecord.session_id == session_id, ProbeStatus.state.in_(("installed", "pending")))
            .distinct()
        )
        return list(rows)


@router.post("/{session_id}/close")
async def close_session(session_id: str, who: AnyUser, context: Gateway) -> Closed:
    """End the session: its probes are removed from every agent (this waits up to 5 s for the
    connected ones to confirm), its events are deleted."""
    row, owner, ids = await run_in_threadpool(_close, context, who, session_id)
    deadline = time.monotonic() + ACK_WAIT
    while True:
        holding = await run_in_threadpool(_holding, context, row.id)
        connected = [i for i in holding if context.connections.connected(i)]
        if not connected or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.05)
    return Closed(
        session=_out(context, row, owner, ids), holding=len(connected), unreachable=len(holding) - len(connected)
    )
