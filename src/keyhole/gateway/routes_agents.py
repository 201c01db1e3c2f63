"""Agent instances, for engineers: which processes run an agent, connected or not, and when each was
last in contact."""

from __future__ import annotations

import json

from fastapi import APIRouter
from pydantic import BaseModel

from keyhole.gateway import instances
from keyhole.gateway.api_auth import AnyUser, Gateway
from keyhole.gateway.models import Instance

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


def agent_out(row: Instance, connected: bool) -> AgentOut:
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
    )


@router.get("")
def list_agents(_: AnyUser, context: Gateway) -> list[AgentOut]:
    with context.transaction() as db:
        rows = instances.all_instances(db)
    return [agent_out(row, context.connections.connected(row.id)) for row in rows]
