"""The agent endpoint (mutual TLS): hello, the long-polled probe set, event uploads and certificate
renewal. The caller is the agent credential named by its client certificate."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from keyhole.gateway.agents import instances
from keyhole.gateway.agents.enrollment import renew
from keyhole.gateway.agents.event_ingest import Uploader, prepare, save
from keyhole.gateway.api.callers import Gateway
from keyhole.gateway.api.routes.enroll import Labels, ServiceName
from keyhole.gateway.api.tls_peer import peer_name
from keyhole.gateway.audit.log import append
from keyhole.gateway.context import GatewayContext
from keyhole.gateway.errors import ApiError
from keyhole.gateway.storage.models import ProbeStatus
from keyhole.protocol.events import DISABLED
from keyhole.protocol.link import (
    EVENTS_PATH,
    HELLO_PATH,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_POLL_WAIT,
    PROBES_PATH,
    RENEW_PATH,
)

router = APIRouter(tags=["agent link"])
Peer = Annotated[str, Depends(peer_name)]
_INSTANCE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class HelloRequest(BaseModel):
    instance: str = Field(pattern=_INSTANCE)
    service: ServiceName
    host: str = Field(max_length=255)
    pid: int = Field(ge=0)
    python: str = Field(max_length=32)
    keyhole: str = Field(max_length=32)
    labels: Labels = Field(default_factory=dict)


class HelloResponse(BaseModel):
    instance: str
    server_time: float


class ProbeSet(BaseModel):
    digest: str
    probes: list[dict[str, str]]
    server_time: float


class RenewRequest(BaseModel):
    public_key: str = Field(max_length=64)
    proof: str = Field(max_length=128)


class RenewResponse(BaseModel):
    cert_pem: str
    cert_expires_at: float


class Uploaded(BaseModel):
    stored: int
    statuses: int
    dropped: int


@router.post(HELLO_PATH)
def hello(body: HelloRequest, peer: Peer, context: Gateway) -> HelloResponse:
    with context.audited() as db:
        append(
            db, f"agent:{body.instance}", "agent.connect", credential=peer, hello=body.model_dump(exclude={"instance"})
        )
        instances.register(db, peer, instances.Hello(**body.model_dump()))
    context.connections.said_hello(body.instance)
    return HelloResponse(instance=body.instance, server_time=time.time())


def _cached_service(context: GatewayContext, peer: str, instance: str) -> str | None:
    """The instance's service if it was checked against the database in the last few seconds: every
    answered poll is re-sent at once, and a transaction each time would dominate fan-out."""
    known = context.known_instances.get(instance)
    if known is None or known[0] != peer or peer in context.revoked_credentials:
        return None
    return known[1] if time.monotonic() - known[2] < instances.TOUCH_EVERY else None


def _known_instance(context: GatewayContext, peer: str, instance: str) -> str:
    with context.transaction() as db:
        row = instances.instance_of(db, peer, instance)
        instances.touch(db, row)
        service = row.service
    context.known_instances[instance] = (peer, service, time.monotonic())
    return service


async def _disconnected(request: Request) -> None:
    """Returns when the agent's connection closes (its process ended or it stopped)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


@router.get(PROBES_PATH, response_model=ProbeSet)
async def probe_set(
    request: Request,
    *,
    peer: Peer,
    context: Gateway,
    instance: Annotated[str, Query(pattern=_INSTANCE)],
    have: Annotated[str, Query(max_length=64)] = "",
    wait: Annotated[float, Query(ge=0, le=MAX_POLL_WAIT)] = 0.0,
) -> Response:
    """The probes this instance should hold. With `have` (the digest of the set it holds) and `wait`,
    the answer is held until the set changes or `wait` seconds pass."""
    service = _cached_service(context, peer, instance)
    if service is None:
        service = await run_in_threadpool(_known_instance, context, peer, instance)
    answers = context.probe_set_answers
    context.connections.poll_started(instance)
    try:
        generation, current = await answers.current(service, instance)
        if current.digest != have or wait <= 0:
            return _json(current.body())
        if peer in context.revoked_credentials:  # revoked after the check above: no wait for it
            await run_in_threadpool(_known_instance, context, peer, instance)
        changed = asyncio.ensure_future(context.probe_sets.wait(service, generation, wait))
        gone = asyncio.ensure_future(_disconnected(request))
        await asyncio.wait((changed, gone), return_when=asyncio.FIRST_COMPLETED)
        for task in (changed, gone):
            task.cancel()
        if gone.done() and not gone.cancelled():
            context.connections.gone(instance)
            return _json(current.body())
        if peer in context.revoked_credentials:  # revoked while it waited: the database check refuses it
            await run_in_threadpool(_known_instance, context, peer, instance)
        _, latest = await answers.current(service, instance)
        return _json(latest.body())
    finally:
        context.connections.poll_ended(instance)


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BATCH_BYTES):
        raise ApiError(413, f"an event batch may be at most {MAX_BATCH_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BATCH_BYTES:
            raise ApiError(413, f"an event batch may be at most {MAX_BATCH_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_batch(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiError(400, "the event batch is not JSON (or is nested too deeply)") from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("instance"), str)
        or not isinstance(data.get("events"), list)
    ):
        raise ApiError(400, 'an event batch is {"instance": ID, "events": [...]}')
    if len(data["events"]) > MAX_BATCH_EVENTS:
        raise ApiError(413, f"an event batch may hold at most {MAX_BATCH_EVENTS} events")
    return data


def _newly_disabled(db: Session, instance: str, rows: list[dict[str, Any]]) -> dict[str, str]:
    """Probes this upload reports disabled that were not so before: one entry each, however often an
    agent repeats itself."""
    reported = {row["probe_id"]: row["detail"] for row in rows if row["state"] == DISABLED}
    if not reported:
        return {}
    already = db.scalars(
        select(ProbeStatus.probe_id).where(
            ProbeStatus.instance_id == instance,
            ProbeStatus.probe_id.in_(reported),
            ProbeStatus.state == DISABLED,
        )
    )
    for probe in already:
        reported.pop(probe, None)
    return reported


def _store(context: GatewayContext, peer: str, raw: bytes) -> Uploaded:
    data = _parse_batch(raw)  # here, in the thread pool: parsing 4 MiB must not stall the event loop
    instance = data["instance"]
    service = _cached_service(context, peer, instance) or _known_instance(context, peer, instance)
    with context.transaction() as db:
        result = prepare(db, Uploader(instance, service), data["events"])
    with context.audited() as db:  # events of a session that ended meanwhile are swept within a second
        disabled = _newly_disabled(db, instance, result.status_rows)
        save(db, result)
        if result.received:  # which events came, by digest: never their content
            append(db, f"agent:{instance}", "events.received", events=[list(r) for r in result.received])
        for probe, reason in disabled.items():  # the agent's limits stopped a probe: the reason says which
            append(db, f"agent:{instance}", "probe.disabled", probe=probe, reason=reason)
        if result.agent_dropped:
            instances.add_dropped(db, instance, result.agent_dropped)
    for session in result.sessions:
        context.session_events.bump(session)
    return Uploaded(stored=result.stored, statuses=result.statuses, dropped=result.dropped)


@router.post(
    EVENTS_PATH, openapi_extra={"requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}}}
)
async def upload_events(request: Request, peer: Peer, context: Gateway) -> Uploaded:
    """A batch: ``{"instance": ID, "events": [event, ...]}``, at most 500 events and 4 MiB."""
    raw = await _body(request)
    # Not a sign of presence: a stopping agent's last upload comes after its poll has closed.
    async with context.ingest_slots:
        return await run_in_threadpool(_store, context, peer, raw)


@router.post(RENEW_PATH)
def renew_certificate(body: RenewRequest, peer: Peer, context: Gateway) -> RenewResponse:
    try:
        public_key, proof = (
            base64.b64decode(body.public_key, validate=True),
            base64.b64decode(body.proof, validate=True),
        )
    except ValueError:
        raise ApiError(400, "public_key and proof must be base64") from None
    with context.audited() as db:
        issued = renew(
            db, context.ca, credential_id=peer, public_key=public_key, proof=proof, lifetime=context.agent_cert_ttl
        )
        append(db, f"credential:{peer}", "agent.renew", expires_at=round(issued.expires_at))
    return RenewResponse(cert_pem=issued.cert_pem, cert_expires_at=issued.expires_at)
