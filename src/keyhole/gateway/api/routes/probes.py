"""Probes in a session: set one, list them with each instance's report, remove one."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from keyhole.gateway.access.permissions import check_probe, observer, still_in_force
from keyhole.gateway.agents import instances
from keyhole.gateway.api.callers import AnyUser, Gateway
from keyhole.gateway.audit.log import append
from keyhole.gateway.context import GatewayContext
from keyhole.gateway.errors import ApiError, Forbidden
from keyhole.gateway.sessions import debug_sessions as sessions
from keyhole.gateway.sessions.probe_commands import create_probe, remove_probe, session_probe, session_probes, statuses
from keyhole.gateway.storage.models import Instance, ProbeRecord, ProbeStatus

router = APIRouter(prefix="/v1/sessions/{session_id}/probes", tags=["probes"])


class ProbeRequest(BaseModel):
    """A probe spec as in a probe file (kind, file/line or function, condition...), without its id,
    plus an optional instance to aim at one process only."""

    model_config = ConfigDict(extra="allow")
    kind: str
    instance: str | None = Field(default=None, max_length=64)


class InstanceReport(BaseModel):
    instance: str
    connected: bool
    state: str = Field(description="installed, pending, error, disabled, removed, or waiting (no report yet)")
    detail: str


class ProbeOut(BaseModel):
    id: str
    kind: str
    spec: dict[str, Any]
    instance: str | None
    created_at: float
    expires_at: float
    removed: bool
    instances: list[InstanceReport]


def _reports(
    context: GatewayContext, row: ProbeRecord, found: list[ProbeStatus], agents: list[Instance]
) -> list[InstanceReport]:
    by_instance = {s.instance_id: s for s in found}
    reports = []
    for agent in agents:
        if row.instance_id is not None and agent.id != row.instance_id:
            continue
        status = by_instance.pop(agent.id, None)
        connected = context.connections.connected(agent.id)
        if status is None and not connected:
            continue  # a process gone before this probe existed has nothing to say about it
        reports.append(
            InstanceReport(
                instance=agent.id,
                connected=connected,
                state=status.state if status else "waiting",
                detail=status.detail if status else "",
            )
        )
    return reports


def _out(context: GatewayContext, row: ProbeRecord, found: list[ProbeStatus], agents: list[Instance]) -> ProbeOut:
    return ProbeOut(
        id=row.id,
        kind=row.kind,
        spec=json.loads(row.spec),
        instance=row.instance_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        removed=row.removed_at is not None,
        instances=_reports(context, row, found, agents),
    )


@router.post("", status_code=201, responses={400: {"description": "the spec does not validate"}})
def set_probe(session_id: str, body: ProbeRequest, who: AnyUser, context: Gateway) -> ProbeOut:
    fields = body.model_dump(exclude={"instance"}, exclude_none=True)
    if fields.get("reveal"):
        # Who may see which redacted classes is a role's grant (policy), not the asker's choice.
        raise Forbidden(
            "revealing redacted values needs a role that grants it; probes show redacted values", "probe.set"
        )
    with context.transaction() as db:
        live = sessions.live_session(db, who, session_id)
        service, grant_id = live.service, live.grant_id
    checked = context.policy
    grant = check_probe(context, who, service, grant_id, fields["kind"])
    if grant.reveal:
        fields["reveal"] = list(grant.reveal)  # the viewer's roles decide; the agent redacts for them
    with context.audited() as db:
        still_in_force(context, checked)
        session = sessions.live_session(db, who, session_id)
        agents = instances.service_instances(db, session.service)
        if body.instance is not None and body.instance not in {a.id for a in agents}:
            raise ApiError(
                400, f"no instance {body.instance!r} of service {session.service!r}; list them with: keyhole agents"
            )
        row = create_probe(db, context.signing_key, session, fields, body.instance)
        append(
            db, f"user:{who.name}", "probe.set", session=session.id, probe=row.id, spec=fields, instance=body.instance
        )
    context.probe_sets.bump(session.service)
    return _out(context, row, [], agents)


@router.get("")
def list_probes(session_id: str, who: AnyUser, context: Gateway) -> list[ProbeOut]:
    with context.transaction() as db:
        session = sessions.visible_session(db, who, session_id, observer(context, who))
        rows = session_probes(db, session.id)
        found = statuses(db, [r.id for r in rows])
        agents = instances.service_instances(db, session.service)
    return [_out(context, r, found[r.id], agents) for r in rows]


@router.get("/{probe_id}")
def show_probe(session_id: str, probe_id: str, who: AnyUser, context: Gateway) -> ProbeOut:
    with context.transaction() as db:
        session = sessions.visible_session(db, who, session_id, observer(context, who))
        row = session_probe(db, session, probe_id)
        found = statuses(db, [row.id])
        agents = instances.service_instances(db, session.service)
    return _out(context, row, found[row.id], agents)


@router.delete("/{probe_id}", status_code=204)
def delete_probe(session_id: str, probe_id: str, who: AnyUser, context: Gateway) -> Response:
    with context.audited() as db:
        session = sessions.visible_session(db, who, session_id)  # its owner's alone
        row = session_probe(db, session, probe_id)
        append(db, f"user:{who.name}", "probe.remove", session=session.id, probe=row.id)
        changed = remove_probe(db, row)
    if changed:
        context.probe_sets.bump(session.service)
    return Response(status_code=204)
