"""The audit log's Merkle tree in the database: every complete subtree's hash, written as leaves
arrive, so that the root at any size and any proof take a few reads (log n), never the whole log."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.orm import Session

from keyhole.gateway.storage.models import AuditNode
from keyhole.verifier.merkle import consistency_path, inclusion_path, node_hash, stored_range_root

_NODES = cast(Table, AuditNode.__table__)
_INSERT_NODES = insert(_NODES)
_NODE = select(_NODES.c.hash).where(_NODES.c.level == bindparam("level"), _NODES.c.idx == bindparam("idx"))


def add_leaf(db: Session, index: int, leaf: bytes) -> None:
    """Store leaf `index` and every subtree it completes (leaves must come in order). Core statements,
    not ORM objects: an append is on the path of every audited action."""
    rows = [{"level": 0, "idx": index, "hash": leaf}]
    level, idx, value = 0, index, leaf
    while idx & 1:  # a right child: its parent is complete now
        level, idx, value = level + 1, idx >> 1, node_hash(_subtree(db, level, idx - 1), value)
        rows.append({"level": level, "idx": idx, "hash": value})
    db.execute(_INSERT_NODES, rows)


def _subtree(db: Session, level: int, idx: int) -> bytes:
    found = db.execute(_NODE, {"level": level, "idx": idx}).scalar()
    if not isinstance(found, bytes):
        raise LookupError(f"the audit tree lacks node ({level}, {idx})")
    return found


def range_root(db: Session, start: int, end: int) -> bytes:
    return stored_range_root(start, end, lambda level, idx: _subtree(db, level, idx))


def root_at(db: Session, size: int) -> bytes:
    return range_root(db, 0, size)


def inclusion(db: Session, index: int, size: int) -> list[bytes]:
    return inclusion_path(index, size, lambda lo, hi: range_root(db, lo, hi))


def consistency(db: Session, size1: int, size2: int) -> list[bytes]:
    return consistency_path(size1, size2, lambda lo, hi: range_root(db, lo, hi))
