"""Appending to the audit log, and signing its checkpoints.

An entry is appended in the same database transaction as the action it records, before the action's
own writes: if the append fails, the transaction and so the action fail with it (rule 3, fail
closed). Each entry is canonical JSON (RFC 8785) holding its own position, so an entry moved to
another place no longer matches it; its hash is a leaf of the log's Merkle tree.
"""

from __future__ import annotations

import math
import time
from typing import Any, cast

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session

from keyhole.gateway.audit import tree_store as audit_tree
from keyhole.gateway.errors import GatewayError
from keyhole.gateway.storage.models import AuditCheckpoint, AuditEntry
from keyhole.protocol.events import format_timestamp
from keyhole.verifier.checkpoints import Checkpoint, NoteError, open_note, origin_for, sign
from keyhole.verifier.merkle import ProofError, leaf_hash, verify_consistency

_SAFE_INTEGER = 2**53 - 1  # RFC 8785 numbers are IEEE doubles: larger integers would not survive


def _text(value: str) -> str:
    """Text as UTF-8 can hold it: a lone surrogate (JSON allows "\\ud800") is kept as its escape."""
    if value.isascii():
        return value
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _representable(value: Any) -> Any:
    """Details as canonical JSON can hold them: a number it cannot represent exactly (a huge integer
    from a request, a NaN) is recorded as its text, rather than making the append, and so the action,
    fail."""
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -_SAFE_INTEGER <= value <= _SAFE_INTEGER else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dict):
        return {_text(str(k)): _representable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_representable(v) for v in value]
    return str(value)


def entry_body(seq: int, at: float, actor: str, action: str, details: dict[str, Any]) -> bytes:
    entry: dict[str, Any] = {"seq": seq, "at": format_timestamp(at), "actor": _text(actor), "action": action}
    return rfc8785.dumps({**entry, "details": _representable(details)})


_ENTRIES = cast(Table, AuditEntry.__table__)
_INSERT_ENTRY = insert(_ENTRIES)
_SIZE = select(func.coalesce(func.max(_ENTRIES.c.seq) + 1, 0))


def size(db: Session) -> int:
    return int(db.execute(_SIZE).scalar() or 0)


# Where a transaction keeps the entries it appended, for whoever announces them once it commits.
APPENDED = "keyhole_audit_appended"


def append(db: Session, actor: str, action: str, **details: Any) -> int:
    """Record an action; returns its position. `actor` is "user:NAME", "agent:INSTANCE",
    "credential:ID", "anonymous" or "gateway". Written at once, inside the action's transaction: a
    failure here refuses the action."""
    seq = size(db)
    at = time.time()
    body = entry_body(seq, at, actor, action, details)
    db.execute(_INSERT_ENTRY, {"seq": seq, "at": at, "actor": actor, "action": action, "body": body})
    audit_tree.add_leaf(db, seq, leaf_hash(body))
    db.info.setdefault(APPENDED, []).append((action, body))
    return seq


class LogRewritten(GatewayError):
    """The stored log no longer extends the last checkpoint the gateway signed: it will not sign it."""


def checkpoint(db: Session, key: Ed25519PrivateKey) -> AuditCheckpoint:
    """The signed checkpoint of the log as it stands, made now unless the latest covers it. Signed
    only if the log still extends the latest signed checkpoint: the gateway must never vouch for a log
    someone rewrote behind it."""
    current = size(db)
    latest = db.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(1))
    if latest is not None and latest.size == current:
        return latest
    root = audit_tree.root_at(db, current)
    if latest is not None and latest.size > 0:
        try:
            signed = open_note(latest.note, key.public_key())
            proof = audit_tree.consistency(db, signed.size, current)
            verify_consistency(signed.size, current, proof, signed.root, root)
        except (NoteError, ProofError, LookupError) as exc:
            raise LogRewritten(
                f"the audit log no longer extends its checkpoint of size {latest.size} ({exc}); "
                "run keyhole audit verify --data DIR"
            ) from None
    note = sign(Checkpoint(origin_for(key.public_key()), current, root), key)
    made = AuditCheckpoint(size=current, at=time.time(), note=note)
    db.add(made)
    db.flush()
    return made
