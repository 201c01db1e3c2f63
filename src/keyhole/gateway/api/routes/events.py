"""Reading a session's events, optionally waiting for new ones (`keyhole events --follow`)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from keyhole.gateway.access.permissions import observer, viewer_reveal
from keyhole.gateway.agents.event_ingest import redact_again
from keyhole.gateway.api.callers import AnyUser, Gateway
from keyhole.gateway.audit.log import append
from keyhole.gateway.context import GatewayContext
from keyhole.gateway.identity.tokens import Caller
from keyhole.gateway.sessions import debug_sessions as sessions
from keyhole.gateway.storage.models import EventRecord

router = APIRouter(prefix="/v1/sessions/{session_id}/events", tags=["events"])
MAX_WAIT = 25.0


class EventPage(BaseModel):
    events: list[dict[str, Any]] = Field(description="in the schema of `keyhole run`'s events file, plus instance")
    last: int = Field(description="pass as `after` to get the next page")
    ended: bool = Field(description="the session has ended: no more events will come")


def _page(
    context: GatewayContext, who: Caller, session_id: str, *, after: int, probe: str | None, limit: int
) -> EventPage:
    with context.audited() as db:
        session = sessions.visible_session(db, who, session_id, observer(context, who))
        query = select(EventRecord.id, EventRecord.body).where(
            EventRecord.session_id == session.id, EventRecord.id > after
        )
        if probe is not None:
            query = query.where(EventRecord.probe_id == probe)
        rows = db.execute(query.order_by(EventRecord.id).limit(limit)).all()
        ended = session.ended_at is not None
        if rows:  # who read which events (an empty page shows nothing)
            append(db, f"user:{who.name}", "events.read", session=session.id, first=rows[0][0], last=rows[-1][0])
    events = [json.loads(body) for _, body in rows]
    if session.user_id != who.user_id:
        # Stored as the owner may see them: an observer sees only what the observer's own roles reveal.
        reveal = viewer_reveal(context, who, session.service)
        events = [redact_again(event, reveal) for event in events]
    return EventPage(events=events, last=rows[-1][0] if rows else after, ended=ended)


@router.get("")
async def read_events(
    session_id: str,
    *,
    who: AnyUser,
    context: Gateway,
    after: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
    probe: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 0.0,
) -> EventPage:
    """Events after `after`, oldest first. With `wait`, an empty answer is held until events come."""
    generation = context.session_events.generation(session_id)
    page = await run_in_threadpool(lambda: _page(context, who, session_id, after=after, probe=probe, limit=limit))
    if page.events or page.ended or wait <= 0:
        return page
    await context.session_events.wait(session_id, generation, wait)
    return await run_in_threadpool(lambda: _page(context, who, session_id, after=after, probe=probe, limit=limit))
