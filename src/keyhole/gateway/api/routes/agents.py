"""Agent instances, for engineers: which processes run an agent, connected or not, and when each was
last in contact."""

from __future__ import annotations

import json
import time

from fastapi import APIRouter
from pydantic import BaseModel, Field

from keyhole.gateway.access.permissions import abilities
from keyhole.gateway.agents import instances
from keyhole.gateway.api.callers import AnyUser, EnrollmentAdmin, Gateway
from keyhole.gateway.audit.log import append
from keyhole.gateway.storage.models import Instance

router = APIRouter(prefix="/v1/agents", tags=["agents"])


class AgentOut(BaseModel):
    instance: str
    service: str
    host: str
    pid: int
    python: str
    keyhole: str
    labels: dict[str, str]
    connected: bool
    first_seen: float
    last_seen: float
    dropped: int
    revoked: bool


class RevokeOut(BaseModel):
    service: str
    instances: list[str] = Field(description="every process of the revoked enrollment (forked workers share it)")


def agent_out(row: Instance, connected: bool, revoked: bool) -> AgentOut:
    return AgentOut(
        instance=row.id,
        service=row.service,
        host=row.host,
        pid=row.pid,
        python=row.python,
        keyhole=row.keyhole,
        labels=json.loads(row.labels),
        connected=connected,
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        dropped=row.dropped,
        revoked=revoked,
    )


@router.get("")
def list_agents(who: AnyUser, context: Gateway) -> list[AgentOut]:
    """The agents of the services the caller's roles reach or observe (all of them with the
    enrollment ability, or without a policy)."""
    with context.transaction() as db:
        rows = instances.all_instances(db)
        revoked = instances.revoked_credentials(db)
    policy = context.policy
    if policy is not None and "enrollment" not in abilities(context, who):
        held = policy.roles_of(who.name)
        rows = [row for row in rows if any(r.covers(row.service) or r.observes(row.service) for r in held)]
    return [agent_out(row, context.connections.connected(row.id), row.credential_id in revoked) for row in rows]


@router.post("/{instance}/revoke")
def revoke_agent(instance: str, who: EnrollmentAdmin, context: Gateway) -> RevokeOut:
    """Revoke the enrollment of an agent instance: its certificates stop working at once, for every
    process that shares it. Its long-polls are answered now and their next request is refused, so the
    agents drop their probes and stop; they need a new enrollment token to come back."""
    with context.audited() as db:
        revoked = instances.revoke(db, instance, time.time())
        append(db, f"user:{who.name}", "agent.revoke", instance=instance, credential=revoked.credential)
    context.revoked_credentials.add(revoked.credential)  # the next request of each reads the revocation
    context.probe_sets.bump(revoked.service)  # and its waiting poll makes one now
    return RevokeOut(service=revoked.service, instances=revoked.instances)
