"""Appending to the audit log, and signing its checkpoints.

An entry is appended in the same database transaction as the action it records, before the action's
own writes: if the append fails, the transaction and so the action fail with it (rule 3, fail
closed). Each entry is canonical JSON (RFC 8785) holding its own position, so an entry moved to
another place no longer matches it; its hash is a leaf of the log's Merkle tree.
"""

from __future__ import annotations

import time
from typing import Any, cast

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session

from keyhole.gateway import audit_tree
from keyhole.gateway.audit_notes import Checkpoint, origin_for, sign
from keyhole.gateway.merkle import leaf_hash
from keyhole.gateway.models import AuditCheckpoint, AuditEntry
from keyhole.protocol.events import format_timestamp


def entry_body(seq: int, at: float, actor: str, action: str, details: dict[str, Any]) -> bytes:
    return rfc8785.dumps({"seq": seq, "at": format_timestamp(at), "actor": actor, "action": action, "details": details})


_ENTRIES = cast(Table, AuditEntry.__table__)
_INSERT_ENTRY = insert(_ENTRIES)
_SIZE = select(func.coalesce(func.max(_ENTRIES.c.seq) + 1, 0))


def size(db: Session) -> int:
    return int(db.execute(_SIZE).scalar() or 0)


def append(db: Session, actor: str, action: str, **details: Any) -> int:
    """Record an action; returns its position. `actor` is "user:NAME", "agent:INSTANCE",
    "credential:ID", "anonymous" or "gateway". Written at once, inside the action's transaction: a
    failure here refuses the action."""
    seq = size(db)
    at = time.time()
    body = entry_body(seq, at, actor, action, details)
    db.execute(_INSERT_ENTRY, {"seq": seq, "at": at, "actor": actor, "action": action, "body": body})
    audit_tree.add_leaf(db, seq, leaf_hash(body))
    return seq


def checkpoint(db: Session, key: Ed25519PrivateKey) -> AuditCheckpoint:
    """The signed checkpoint of the log as it stands, made now unless the latest covers it."""
    current = size(db)
    latest = db.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(1))
    if latest is not None and latest.size == current:
        return latest
    note = sign(Checkpoint(origin_for(key.public_key()), current, audit_tree.root_at(db, current)), key)
    made = AuditCheckpoint(size=current, at=time.time(), note=note)
    db.add(made)
    db.flush()
    return made
