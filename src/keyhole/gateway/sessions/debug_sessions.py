"""Debug sessions: one user, one service, a reason and a deadline. Ending one (closed by its owner
or an observer of its service, or expired) removes its probes from every agent and deletes the events it gathered."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from keyhole.gateway.errors import ApiError, Forbidden
from keyhole.gateway.identity.tokens import Caller
from keyhole.gateway.storage.models import DebugSession, EventRecord, ProbeRecord

DEFAULT_TTL = 15 * 60.0
# Until roles carry their own limits (policy), every session is held to this.
MAX_TTL = 60 * 60.0
MAX_REASON = 500
# Why a session ended early (its end reason), besides "closed" and "expired".
ACCESS_REVOKED, ACCESS_EXPIRED, POLICY_CHANGED = "access revoked", "access expired", "policy changed"


def open_session(
    db: Session,
    who: Caller,
    service: str,
    reason: str,
    ttl: float,
    *,
    max_ttl: float = MAX_TTL,
    grant_id: str | None = None,
) -> DebugSession:
    if not reason.strip():
        raise ApiError(400, "a session needs a reason: say why you are looking, e.g. --reason 'INC-42 refunds fail'")
    if not 60 <= ttl <= max_ttl:
        raise ApiError(400, f"session ttl must be from 1m to {max_ttl / 60:.0f}m (got {ttl:g}s)")
    now = time.time()
    row = DebugSession(
        id="ses-" + secrets.token_hex(8),
        user_id=who.user_id,
        service=service,
        reason=reason.strip(),
        created_at=now,
        expires_at=now + ttl,
        grant_id=grant_id,
    )
    db.add(row)
    return row


# Whether the caller may watch other users' sessions on a service (policy `observe:`).
Observer = Callable[[str], bool]


def only_own(_: str) -> bool:
    return False


def visible_session(db: Session, who: Caller, session_id: str, observer: Observer = only_own) -> DebugSession:
    """The caller's own session, or one on a service the caller observes."""
    row = db.get(DebugSession, session_id)
    if row is None:
        raise ApiError(404, f"no session {session_id!r}; list yours with: keyhole session list")
    if row.user_id != who.user_id and not observer(row.service):
        raise Forbidden(
            f"session {session_id} is another user's; only its owner and observers of its service may see it"
        )
    return row


def live_session(db: Session, who: Caller, session_id: str) -> DebugSession:
    """The caller's own session, still open: only its owner sets or removes its probes."""
    row = visible_session(db, who, session_id)
    if row.ended_at is not None or row.expires_at <= time.time():
        raise ApiError(
            409, f"session {session_id} has ended; open a new one: keyhole session open --service NAME --reason TEXT"
        )
    return row


def end_session(db: Session, row: DebugSession, reason: str) -> bool:
    """Mark the session ended, its probes removed and its events deleted; False if it had ended."""
    now = time.time()
    claimed = db.execute(
        update(DebugSession)
        .where(DebugSession.id == row.id, DebugSession.ended_at.is_(None))
        .values(ended_at=now, end_reason=reason)
        .execution_options(synchronize_session=False)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        return False
    row.ended_at, row.end_reason = now, reason
    db.execute(
        update(ProbeRecord)
        .where(ProbeRecord.session_id == row.id, ProbeRecord.removed_at.is_(None))
        .values(removed_at=now)
        .execution_options(synchronize_session=False)
    )
    db.execute(delete(EventRecord).where(EventRecord.session_id == row.id))
    return True


def sessions_of(db: Session, who: Caller, observer: Observer = only_own) -> list[DebugSession]:
    """The caller's sessions and those on services the caller observes, newest first."""
    query = select(DebugSession).order_by(DebugSession.created_at.desc()).limit(200)
    if observer is only_own:
        return list(db.scalars(query.where(DebugSession.user_id == who.user_id)))
    observed = [s for s in db.scalars(select(DebugSession.service).distinct()) if observer(s)]
    return list(db.scalars(query.where(or_(DebugSession.user_id == who.user_id, DebugSession.service.in_(observed)))))


@dataclass
class Expired:
    services: set[str] = field(default_factory=set)  # whose probe sets changed
    sessions: set[str] = field(default_factory=set)  # that ended
    probes: set[str] = field(default_factory=set)  # past their own deadline


def expire_due(db: Session, now: float) -> Expired:
    """End every session past its deadline, remove every probe past its own, and delete events that
    an upload racing a session's end stored after it ended."""
    expired = Expired()
    changed = expired.services
    for row in db.scalars(select(DebugSession).where(DebugSession.ended_at.is_(None), DebugSession.expires_at <= now)):
        if end_session(db, row, "expired"):
            changed.add(row.service)
            expired.sessions.add(row.id)
    due = db.execute(
        select(ProbeRecord.id, DebugSession.service)
        .join(DebugSession, DebugSession.id == ProbeRecord.session_id)
        .where(ProbeRecord.removed_at.is_(None), ProbeRecord.expires_at <= now)
    ).all()
    if due:
        db.execute(
            update(ProbeRecord)
            .where(ProbeRecord.id.in_([probe_id for probe_id, _ in due]))
            .values(removed_at=now)
            .execution_options(synchronize_session=False)
        )
        changed.update(service for _, service in due)
        expired.probes.update(probe_id for probe_id, _ in due)
    ended = select(DebugSession.id).where(DebugSession.ended_at.is_not(None))
    db.execute(delete(EventRecord).where(EventRecord.session_id.in_(ended)))
    return expired
