"""Just-in-time access over the API: request a role that needs approval, list, approve, deny, revoke.
Every step is recorded in the audit log; a revoked grant's sessions end and leave every agent."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from keyhole.gateway.access import approvals as requests
from keyhole.gateway.access.permissions import abilities
from keyhole.gateway.access.policy import LONGEST_SESSION
from keyhole.gateway.api.callers import AnyUser, Gateway
from keyhole.gateway.api.routes.enroll import ServiceName, seconds
from keyhole.gateway.audit.log import append
from keyhole.gateway.storage.models import AccessRequest

router = APIRouter(prefix="/v1/access", tags=["access"])


class AccessRequestIn(BaseModel):
    role: str = Field(min_length=1, max_length=64)
    service: ServiceName
    reason: str = Field(min_length=1, max_length=2000)
    ttl: float | str | None = Field(default=None, description="how long the grant lasts once approved, e.g. 30m")


class Decision(BaseModel):
    reason: str = Field(default="", max_length=2000)


class AccessOut(BaseModel):
    id: str
    user: str
    role: str
    service: str
    reason: str
    state: str
    approvals: int
    created_at: float
    expires_at: float
    granted_until: float | None


def _out(row: AccessRequest, user: str, approvals: int) -> AccessOut:
    return AccessOut(
        id=row.id,
        user=user,
        role=row.role,
        service=row.service,
        reason=row.reason,
        state=row.state,
        approvals=approvals,
        created_at=row.created_at,
        expires_at=row.expires_at,
        granted_until=row.granted_until,
    )


@router.post("", status_code=201)
def request_access(body: AccessRequestIn, who: AnyUser, context: Gateway) -> AccessOut:
    ttl = None if body.ttl is None else seconds(body.ttl, 0.0, LONGEST_SESSION, "access ttl")
    with context.audited() as db:
        row = requests.create(
            db, context.policy, who, role=body.role, service=body.service, reason=body.reason, ttl=ttl
        )
        details = {"request": row.id, "role": row.role, "service": row.service, "ttl": row.ttl}
        append(db, f"user:{who.name}", "access.request", **details)
    return _out(row, who.name, 0)


@router.get("")
def list_access(
    who: AnyUser,
    context: Gateway,
    pending: Annotated[bool, Query(description="only requests awaiting a decision")] = False,
) -> list[AccessOut]:
    """Your requests, the ones you may decide, and (with the audit ability) all of them, newest first."""
    with context.transaction() as db:
        found = requests.listing(
            db, context.policy, who, pending_only=pending, sees_all="audit" in abilities(context, who)
        )
    return [_out(row, user, count) for row, user, count in found]


@router.post("/{request_id}/approve")
def approve_access(request_id: str, body: Decision, who: AnyUser, context: Gateway) -> AccessOut:
    with context.audited() as db:
        decided = requests.approve(db, context.policy, who, request_id, body.reason)
        row = decided.request
        append(
            db,
            f"user:{who.name}",
            "access.approve",
            request=row.id,
            reason=body.reason,
            approvals=decided.approvals,
            needed=decided.needed,
            granted=row.state == requests.APPROVED,
        )
        user = requests.requester(db, row)
    return _out(row, user, decided.approvals)


@router.post("/{request_id}/deny")
def deny_access(request_id: str, body: Decision, who: AnyUser, context: Gateway) -> AccessOut:
    with context.audited() as db:
        row = requests.deny(db, context.policy, who, request_id)
        append(db, f"user:{who.name}", "access.deny", request=row.id, reason=body.reason)
        user = requests.requester(db, row)
    return _out(row, user, 0)


@router.post("/{request_id}/revoke")
def revoke_access(request_id: str, who: AnyUser, context: Gateway) -> AccessOut:
    """End a grant (or withdraw a pending request): the sessions opened under it end now."""
    with context.audited() as db:
        overseer = "policy" in abilities(context, who)
        row, ended = requests.revoke(db, context.policy, who, request_id, overseer=overseer)
        append(db, f"user:{who.name}", "access.revoke", request=row.id, sessions=[s.id for s in ended])
        user = requests.requester(db, row)
    for session in ended:
        context.probe_sets.bump(session.service)
        context.session_events.bump(session.id)
    return _out(row, user, 0)
