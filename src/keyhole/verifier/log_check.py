"""Checking an audit log: recompute its Merkle tree from the entries and hold it to every signed
checkpoint, to the consistency proofs between them, and to a checkpoint an auditor kept elsewhere.
The first thing that does not hold is reported, naming the first bad entry it can. Where the entries
come from is the caller's: a gateway's data directory (gateway_state.py) or its API.

What each kind of tampering trips:
- an entry's text changed: its hash no longer matches the tree's leaf (or, if the leaf was changed
  too, the root no longer matches the next signed checkpoint);
- an entry deleted or inserted: the positions are no longer 0, 1, 2, ... without a gap;
- entries reordered: each entry's text holds its own position;
- the log cut short: a checkpoint (stored, or kept by an auditor) covers more entries than are left;
- checkpoints rewritten: their signatures are the gateway's ed25519 key's.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from keyhole.protocol.events import format_timestamp
from keyhole.verifier.checkpoints import Checkpoint, NoteError, open_note, origin_for
from keyhole.verifier.errors import Tampered
from keyhole.verifier.merkle import Frontier, ProofError, leaf_hash, verify_consistency


@dataclass(frozen=True)
class Verified:
    entries: int
    checkpoints: int
    kept: Checkpoint | None


def _opened(note: str, key: Ed25519PublicKey, which: str) -> Checkpoint:
    """A checkpoint signed by `key` for its own log, or Tampered naming `which` checkpoint it is."""
    try:
        checkpoint = open_note(note, key)
    except NoteError as exc:
        raise Tampered(f"{which}: {exc}") from None
    if checkpoint.origin != origin_for(key):
        raise Tampered(f"{which} is of another log ({checkpoint.origin})")
    return checkpoint


def _kept(note: str | None, key: Ed25519PublicKey) -> Checkpoint | None:
    return None if note is None else _opened(note, key, "the checkpoint you kept")


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogateescape")


def _head(action: object, actor: object) -> bytes:
    """How a body begins for its row's action and actor columns: canonical JSON sorts "action" and
    "actor" first, then "at"."""
    if not isinstance(action, str) or not isinstance(actor, str):
        return b"\x00"  # no body begins so
    return b'{"action":%s,"actor":%s' % (
        json.dumps(action, ensure_ascii=False).encode("utf-8", "surrogateescape"),
        json.dumps(actor, ensure_ascii=False).encode("utf-8", "surrogateescape"),
    )


def _columns_match(body: bytes, head: bytes, at: object) -> bool:
    """Whether the row's action, actor and time columns (what listings show and filters use) are the
    ones its text was written with."""
    if type(at) is not float or not body.startswith(head):
        return False
    return body.startswith(b',"at":"' + format_timestamp(at).encode() + b'"', len(head))


# A stored entry as the verifier reads it: its position, its canonical text, the tree's leaf hash stored
# for it (None if there is none), and the action, actor and time columns that listings show.
Row = tuple[int, object, object, object, object, object]
# The stored tree's consistency proof between two sizes (LookupError when it lacks a node).
ConsistencyProof = Callable[[int, int], list[bytes]]


def stored_checkpoints(rows: Iterable[tuple[object, object]], key: Ed25519PublicKey) -> list[Checkpoint]:
    """The log's own signed checkpoints, from (size it is filed under, note) in order of size."""
    found = []
    origin = origin_for(key)
    for size, note in rows:
        if not isinstance(note, str):
            raise Tampered(f"stored checkpoint {size} is not a signed note")
        try:
            checkpoint = open_note(note, key)
        except NoteError as exc:
            raise Tampered(f"stored checkpoint {size}: {exc}") from None
        if checkpoint.size != size or checkpoint.origin != origin:
            raise Tampered(f"stored checkpoint {size} is filed under the wrong size or log")
        found.append(checkpoint)
    return found


def verify_stored(
    entries: Iterable[Row],
    checkpoints: list[Checkpoint],
    consistency: ConsistencyProof,
    key: Ed25519PublicKey,
    kept_note: str | None = None,
) -> Verified:
    """A stored log: its entries in order of position, its signed checkpoints (stored_checkpoints), and
    its stored tree's proofs. Raises Tampered at the first problem; returns what was checked when all
    holds."""
    kept = _kept(kept_note, key)
    stored_at = {c.size: c for c in checkpoints}
    if kept is not None and kept.size in stored_at and stored_at[kept.size].root != kept.root:
        raise Tampered(f"the log's own checkpoint of size {kept.size} differs from the one you kept: it was rewritten")
    frontier = Frontier()
    last_good = 0  # entries up to here are covered by a checkpoint that held
    heads: dict[tuple[object, object], bytes] = {}
    for seq, stored, stored_leaf, action, actor, at in entries:
        body = _as_bytes(stored)  # a hand-edited row may come back as text
        if seq != frontier.size:
            raise Tampered(
                f"entry {frontier.size} is missing (the next stored entry is {seq}): entries were deleted"
                if seq > frontier.size
                else f"entry {seq} is stored twice"
            )
        if not body.endswith(b'"seq":%d}' % seq):  # canonical JSON puts "seq" last
            raise Tampered(f"entry {seq} does not hold its own position: entries were moved or reordered")
        leaf = leaf_hash(body)
        if stored_leaf != leaf:
            raise Tampered(f"entry {seq} was changed after it was written: its hash is not the tree's")
        head = heads.get((action, actor))
        if head is None:
            head = _head(action, actor)
            if len(heads) < 10_000:
                heads[action, actor] = head
        if not _columns_match(body, head, at):
            raise Tampered(f"entry {seq}'s action, actor or time columns were changed: they differ from its text")
        frontier.add(leaf)
        size = frontier.size
        for which, checkpoint in (("its signed checkpoint", stored_at.get(size)), ("the checkpoint you kept", kept)):
            if checkpoint is None or checkpoint.size != size:
                continue
            if frontier.root() != checkpoint.root:
                raise Tampered(
                    f"the log up to entry {seq} does not match {which} (size {size}): an entry from "
                    f"{last_good} to {seq} was changed (the first entry that may be bad is {last_good})"
                )
            last_good = size
    size = frontier.size
    for checkpoint in (*checkpoints, *([kept] if kept else [])):
        if checkpoint.size > size:
            which = "the checkpoint you kept" if checkpoint is kept else "its signed checkpoint"
            raise Tampered(
                f"the log has {size} entries but {which} covers {checkpoint.size}: entries from {size} on were deleted"
            )
    _check_proofs(consistency, checkpoints)
    return Verified(size, len(checkpoints), kept)


def _check_proofs(consistency: ConsistencyProof, checkpoints: list[Checkpoint]) -> None:
    """The stored tree's consistency proofs between consecutive checkpoints: what the API serves."""
    for older, newer in itertools.pairwise(checkpoints):
        if older.size == 0:
            continue
        try:
            proof = consistency(older.size, newer.size)
            verify_consistency(older.size, newer.size, proof, older.root, newer.root)
        except (ProofError, LookupError) as exc:
            raise Tampered(
                f"the stored tree cannot prove checkpoint {newer.size} extends checkpoint {older.size}: {exc}"
            ) from None


def verify_served(
    bodies: Iterable[bytes], key: Ed25519PublicKey, latest_note: str, kept_note: str | None = None
) -> Verified:
    """The log as a gateway serves it (`keyhole audit verify` without --data): the entries' own
    positions, and the tree they make held to a checkpoint the gateway signed just before they were
    read, and to the one an auditor kept. A kept checkpoint is what makes this more than the gateway's
    word: a log rewritten behind it, or a gateway that changed its key, fails here."""
    latest = _opened(latest_note, key, "the gateway's checkpoint")
    kept = _kept(kept_note, key)
    frontier = Frontier()
    for body in bodies:
        seq = frontier.size
        if not body.endswith(b'"seq":%d}' % seq):
            raise Tampered(f"entry {seq} does not hold its own position: entries were deleted, moved or inserted")
        frontier.add(leaf_hash(body))
        for which, checkpoint in (("the gateway's checkpoint", latest), ("the checkpoint you kept", kept)):
            if checkpoint is not None and checkpoint.size == frontier.size and frontier.root() != checkpoint.root:
                raise Tampered(f"the log up to entry {seq} does not match {which} (size {checkpoint.size})")
    for which, checkpoint in (("the gateway's checkpoint", latest), ("the checkpoint you kept", kept)):
        if checkpoint is not None and checkpoint.size > frontier.size:
            raise Tampered(f"the gateway served {frontier.size} entries but {which} covers {checkpoint.size}")
    return Verified(frontier.size, 1, kept)
