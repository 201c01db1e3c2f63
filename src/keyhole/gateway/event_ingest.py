"""Events from agents: probe status updates each instance's row for the probe; data events of live
sessions are redacted again (defence in depth: the agent already did) and stored until their session
ends. Anything else (an unknown probe, an ended session, a malformed or oversized event) is dropped
and counted, never an error: one bad event must not cost the batch."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from keyhole.gateway.models import DebugSession, EventRecord, Instance, ProbeRecord, ProbeStatus
from keyhole.protocol import events as ev
from keyhole.protocol.redaction import DEFAULT_RULES, redact_plain
from keyhole.protocol.redaction_check import needs_redaction

MAX_EVENT_BYTES = 256 * 1024
# Written by the agent itself, never application data.
_FIXED = frozenset({"probe", "kind", "ts", "thread", "pid", "instance"})
# Trees that came out of json.loads hold no cycles; compact, as every byte is kept until the session ends.
_encode = json.JSONEncoder(check_circular=False, separators=(",", ":")).encode
_STATUS_DETAIL = {ev.ERROR: "error", ev.DISABLED: "reason", ev.PENDING: "reason"}


@dataclass
class Ingested:
    stored: int = 0
    statuses: int = 0
    dropped: int = 0
    sessions: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class _Target:
    session: str
    live: bool
    reveal: frozenset[str]


def _targets(db: Session, instance: Instance, probe_ids: set[str], now: float) -> dict[str, _Target]:
    """The probes this instance may report on: of its own service, and aimed at it or at all."""
    if not probe_ids:
        return {}
    rows = db.execute(
        select(ProbeRecord.id, ProbeRecord.spec, DebugSession.id, DebugSession.ended_at, DebugSession.expires_at)
        .join(DebugSession, DebugSession.id == ProbeRecord.session_id)
        .where(
            ProbeRecord.id.in_(probe_ids),
            DebugSession.service == instance.service,
            (ProbeRecord.instance_id.is_(None)) | (ProbeRecord.instance_id == instance.id),
        )
    ).all()
    out = {}
    for probe_id, spec, session_id, ended_at, expires_at in rows:
        reveal = frozenset(json.loads(spec).get("reveal", ()))
        out[probe_id] = _Target(session_id, ended_at is None and expires_at > now, reveal)
    return out


def _detail(event: dict[str, Any]) -> str:
    if event["kind"] == ev.INSTALLED:
        return ", ".join(str(place) for place in event.get("locations") or [])[:2000]
    return str(event.get(_STATUS_DETAIL.get(event["kind"], ""), ""))[:2000]


def redact_again(event: dict[str, Any], reveal: frozenset[str]) -> dict[str, Any]:
    if not needs_redaction([v for k, v in event.items() if k not in _FIXED], DEFAULT_RULES, reveal):
        return event  # the usual case: the agent did its job, and reading is much cheaper than rebuilding
    return {k: (v if k in _FIXED else redact_plain(v, DEFAULT_RULES, reveal)) for k, v in event.items()}


def ingest(db: Session, instance: Instance, events: list[Any]) -> Ingested:
    now = time.time()
    result = Ingested()
    wellformed = [e for e in events if isinstance(e, dict) and isinstance(e.get("kind"), str)]
    result.dropped += len(events) - len(wellformed)
    targets = _targets(db, instance, {e["probe"] for e in wellformed if isinstance(e.get("probe"), str)}, now)
    rows: list[dict[str, Any]] = []
    for event in wellformed:
        kind, probe_id = event["kind"], event.get("probe")
        if probe_id is None:
            count = event.get("count")
            if kind == ev.DROPPED and type(count) is int and 0 < count <= MAX_EVENT_BYTES * 1000:
                instance.dropped = min(instance.dropped + count, 2**62)
            continue
        target = targets.get(probe_id) if isinstance(probe_id, str) else None
        if target is None:
            result.dropped += 1
        elif kind in (ev.INSTALLED, ev.PENDING, ev.ERROR, ev.DISABLED, ev.REMOVED):
            db.merge(
                ProbeStatus(
                    probe_id=probe_id, instance_id=instance.id, state=kind, detail=_detail(event), updated_at=now
                )
            )
            result.statuses += 1
        elif kind in ev.DATA_KINDS and target.live:
            body = _encode({**redact_again(event, target.reveal), "instance": instance.id})
            if len(body) > MAX_EVENT_BYTES:
                result.dropped += 1
                continue
            rows.append(
                {
                    "session_id": target.session,
                    "probe_id": probe_id,
                    "instance_id": instance.id,
                    "received_at": now,
                    "body": body,
                }
            )
            result.sessions.add(target.session)
        elif kind not in (ev.STATS,):
            result.dropped += 1
    if rows:
        # Core, not the ORM's bulk insert: the same statement at half the cost per row.
        db.execute(insert(cast(Table, EventRecord.__table__)), rows)
    result.stored = len(rows)
    return result
