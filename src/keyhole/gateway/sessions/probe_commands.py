"""Probes in a session: validated with the agent's own validator, signed, stored; and the signed
probe set each agent instance should hold right now."""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from keyhole.gateway.errors import ApiError
from keyhole.gateway.storage.models import DebugSession, ProbeRecord, ProbeStatus
from keyhole.protocol.errors import SpecError
from keyhole.protocol.link import ProbeCommand
from keyhole.protocol.probe_spec import ProbeSpec

# Every agent verifies each new command (about 2 ms of pure-Python ed25519): bounded cost (rule 7).
MAX_LIVE_PROBES = 50


@dataclass(frozen=True)
class LiveProbe:
    id: str
    instance: str | None
    envelope: dict[str, str]


def create_probe(
    db: Session, key: Ed25519PrivateKey, session: DebugSession, fields: dict[str, Any], instance: str | None
) -> ProbeRecord:
    """Validate, sign and store one probe; ApiError(400) with the validator's one line if it is bad."""
    if "id" in fields:
        raise ApiError(400, "probe ids are chosen by the gateway; leave out 'id'")
    live = db.scalar(select(func.count()).where(ProbeRecord.session_id == session.id, ProbeRecord.removed_at.is_(None)))
    if (live or 0) >= MAX_LIVE_PROBES:
        raise ApiError(409, f"a session holds at most {MAX_LIVE_PROBES} live probes; remove some with keyhole rm")
    probe_id = "p" + secrets.token_hex(5)
    try:
        spec = ProbeSpec.from_dict({"id": probe_id, **fields})
    except SpecError as exc:
        raise ApiError(400, str(exc).removeprefix(f"probe {probe_id!r}: ")) from None
    now = time.time()
    expires = min(now + spec.ttl, session.expires_at)
    wire = spec.to_dict()
    command = ProbeCommand(probe=wire, session=session.id, service=session.service, expires=expires, instance=instance)
    payload = command.payload()
    row = ProbeRecord(
        id=probe_id,
        session_id=session.id,
        kind=spec.kind,
        spec=json.dumps(wire),
        instance_id=instance,
        payload=payload.decode(),
        signature=base64.b64encode(key.sign(payload)).decode(),
        created_at=now,
        expires_at=expires,
    )
    db.add(row)
    return row


def session_probe(db: Session, session: DebugSession, probe_id: str) -> ProbeRecord:
    row = db.get(ProbeRecord, probe_id)
    if row is None or row.session_id != session.id:
        raise ApiError(404, f"no probe {probe_id!r} in session {session.id}; list them with: keyhole probes")
    return row


def remove_probe(db: Session, row: ProbeRecord) -> bool:
    claimed = db.execute(
        update(ProbeRecord)
        .where(ProbeRecord.id == row.id, ProbeRecord.removed_at.is_(None))
        .values(removed_at=time.time())
        .execution_options(synchronize_session=False)
    )
    return getattr(claimed, "rowcount", 0) == 1


def session_probes(db: Session, session_id: str) -> list[ProbeRecord]:
    return list(
        db.scalars(select(ProbeRecord).where(ProbeRecord.session_id == session_id).order_by(ProbeRecord.created_at))
    )


def statuses(db: Session, probe_ids: list[str]) -> dict[str, list[ProbeStatus]]:
    out: dict[str, list[ProbeStatus]] = {probe_id: [] for probe_id in probe_ids}
    if probe_ids:
        for row in db.scalars(select(ProbeStatus).where(ProbeStatus.probe_id.in_(probe_ids))):
            out[row.probe_id].append(row)
    return out


def live_probes(db: Session, service: str, now: float) -> list[LiveProbe]:
    """Every probe agents of `service` should hold: in a live session, not removed, not expired."""
    rows = db.execute(
        select(ProbeRecord.id, ProbeRecord.instance_id, ProbeRecord.payload, ProbeRecord.signature)
        .join(DebugSession, DebugSession.id == ProbeRecord.session_id)
        .where(
            DebugSession.service == service,
            DebugSession.ended_at.is_(None),
            DebugSession.expires_at > now,
            ProbeRecord.removed_at.is_(None),
            ProbeRecord.expires_at > now,
        )
        .order_by(ProbeRecord.created_at, ProbeRecord.id)
    ).all()
    return [LiveProbe(pid, instance, {"payload": payload, "sig": sig}) for pid, instance, payload, sig in rows]
