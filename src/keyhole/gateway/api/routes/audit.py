"""The audit log, for admins (an auditor role comes with policy): its entries, a signed checkpoint,
and inclusion and consistency proofs (RFC 9162) against checkpoints. Reading it is audited too."""

from __future__ import annotations

import base64
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from keyhole.gateway.api.callers import AuditReader, Gateway
from keyhole.gateway.audit import log as audit_log
from keyhole.gateway.audit import tree_store as audit_tree
from keyhole.gateway.errors import ApiError
from keyhole.gateway.storage.models import AuditEntry
from keyhole.protocol.durations import parse_duration
from keyhole.protocol.errors import SpecError
from keyhole.verifier.merkle import ProofError

router = APIRouter(prefix="/v1/audit", tags=["audit"])
_MAX_PAGE = 5000


class EntryOut(BaseModel):
    seq: int
    at: str
    actor: str
    action: str
    details: dict[str, Any]
    body: str = Field(description="the stored canonical JSON (RFC 8785), base64: what the tree's leaf hashes")


class EntryPage(BaseModel):
    entries: list[EntryOut]
    size: int = Field(description="entries in the log when this page was read")


class CheckpointOut(BaseModel):
    size: int
    note: str = Field(description="the checkpoint as a C2SP signed note")
    public_key: str = Field(description="the gateway's ed25519 public key, base64: what signs the note")


class ProofOut(BaseModel):
    proof: list[str] = Field(description="hashes, base64, leaf side first")


def _entry(row: AuditEntry) -> EntryOut:
    """Everything shown comes from the entry's text, which the tree covers, not from the columns
    (which `keyhole audit verify` holds to the text)."""
    parsed = json.loads(row.body)
    return EntryOut(
        seq=row.seq,
        at=parsed["at"],
        actor=parsed["actor"],
        action=parsed["action"],
        details=parsed["details"],
        body=base64.b64encode(row.body).decode(),
    )


@router.get("/entries")
def list_entries(
    who: AuditReader,
    context: Gateway,
    *,
    after: Annotated[int, Query(ge=-1, le=2**62, description="entries after this position")] = -1,
    since: Annotated[str | None, Query(max_length=32, description="only the last D (e.g. 2h)")] = None,
    actor: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=_MAX_PAGE)] = 1000,
) -> EntryPage:
    query = select(AuditEntry).where(AuditEntry.seq > after)
    if since is not None:
        try:
            window = parse_duration(since, "since")
        except SpecError as exc:
            raise ApiError(400, str(exc)) from None
        query = query.where(AuditEntry.at >= time.time() - window)
    if actor is not None:
        query = query.where(AuditEntry.actor == actor)
    with context.audited() as db:
        audit_log.append(db, f"user:{who.name}", "audit.read", after=after, since=since, filter_actor=actor)
        rows = list(db.scalars(query.order_by(AuditEntry.seq).limit(limit)))
        size = audit_log.size(db)
    return EntryPage(entries=[_entry(r) for r in rows], size=size)


@router.post("/checkpoint")
def make_checkpoint(who: AuditReader, context: Gateway) -> CheckpointOut:
    """A signed checkpoint of the log as it is now (this request's own entry included)."""
    with context.audited() as db:
        audit_log.append(db, f"user:{who.name}", "audit.checkpoint")
        made = audit_log.checkpoint(db, context.signing_key)
    raw = context.signing_key.public_key().public_bytes_raw()
    return CheckpointOut(size=made.size, note=made.note, public_key=base64.b64encode(raw).decode())


def _proof(hashes: list[bytes]) -> ProofOut:
    return ProofOut(proof=[base64.b64encode(h).decode() for h in hashes])


@router.get("/proof/inclusion")
def inclusion_proof(
    _: AuditReader,
    context: Gateway,
    *,
    index: Annotated[int, Query(ge=0, le=2**62)],
    size: Annotated[int, Query(ge=1, le=2**62)],
) -> ProofOut:
    """That entry `index` is in the tree of `size` entries (a checkpoint's size)."""
    with context.transaction() as db:
        if size > audit_log.size(db):
            raise ApiError(400, f"the log has fewer than {size} entries")
        try:
            return _proof(audit_tree.inclusion(db, index, size))
        except ProofError as exc:
            raise ApiError(400, str(exc)) from None


@router.get("/proof/consistency")
def consistency_proof(
    _: AuditReader,
    context: Gateway,
    *,
    first: Annotated[int, Query(ge=1, le=2**62)],
    second: Annotated[int, Query(ge=1, le=2**62)],
) -> ProofOut:
    """That the tree of `second` entries extends the tree of `first` entries."""
    with context.transaction() as db:
        if second > audit_log.size(db):
            raise ApiError(400, f"the log has fewer than {second} entries")
        try:
            return _proof(audit_tree.consistency(db, first, second))
        except ProofError as exc:
            raise ApiError(400, str(exc)) from None
