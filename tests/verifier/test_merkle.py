"""The audit log's Merkle tree against RFC 9162: the transparency-dev proof vectors, and proofs made
here checked against an independent, literal reading of the RFC's recursive definitions."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyhole.verifier.merkle import (
    EMPTY_ROOT,
    Frontier,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).parent.parent / "data" / "merkle"


def _cases(kind: str) -> list[Any]:
    files = sorted((VECTORS / kind).rglob("*.json"))
    assert len(files) > 50, f"the {kind} vectors are missing"
    return [pytest.param(json.loads(f.read_text()), id=str(f.relative_to(VECTORS))) for f in files]


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


@pytest.mark.parametrize("case", _cases("inclusion"))
def test_inclusion_vectors(case: dict[str, Any]) -> None:
    proof = [_b64(p) for p in case["proof"] or []]
    try:
        verify_inclusion(case["leafIdx"], case["treeSize"], _b64(case["leafHash"]), proof, _b64(case["root"]))
    except ProofError:
        assert case["wantErr"], case["desc"]
    else:
        assert not case["wantErr"], case["desc"]


@pytest.mark.parametrize("case", _cases("consistency"))
def test_consistency_vectors(case: dict[str, Any]) -> None:
    proof = [_b64(p) for p in case["proof"] or []]
    try:
        verify_consistency(case["size1"], case["size2"], proof, _b64(case["root1"]), _b64(case["root2"]))
    except ProofError:
        assert case["wantErr"], case["desc"]
    else:
        assert not case["wantErr"], case["desc"]


# --- the RFC's definitions, word for word (slow, and only for checking) ---------------------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = _k(len(d))
    return hashlib.sha256(b"\x01" + _mth(d[:k]) + _mth(d[k:])).digest()


def _path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    return [*_path(m, d[:k]), _mth(d[k:])] if m < k else [*_path(m - k, d[k:]), _mth(d[:k])]


def _subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [_mth(d)]
    k = _k(len(d))
    return [*_subproof(m, d[:k], b), _mth(d[k:])] if m <= k else [*_subproof(m - k, d[k:], False), _mth(d[:k])]


_entries = st.lists(st.binary(max_size=8), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(_entries, st.data())
def test_proofs_are_the_rfcs_and_verify(entries: list[bytes], data: st.DataObject) -> None:
    leaves = [leaf_hash(e) for e in entries]
    assert root(leaves) == _mth(entries)
    index = data.draw(st.integers(0, len(entries) - 1))
    proof = inclusion_proof(index, leaves)
    assert proof == _path(index, entries)
    verify_inclusion(index, len(leaves), leaves[index], proof, root(leaves))
    size1 = data.draw(st.integers(1, len(entries)))
    consistency = consistency_proof(size1, leaves)
    assert consistency == _subproof(size1, entries, True)
    verify_consistency(size1, len(leaves), consistency, root(leaves[:size1]), root(leaves))


@settings(max_examples=100, deadline=None)
@given(_entries, st.data())
def test_a_changed_entry_breaks_every_proof_that_covers_it(entries: list[bytes], data: st.DataObject) -> None:
    leaves = [leaf_hash(e) for e in entries]
    changed = data.draw(st.integers(0, len(entries) - 1))
    forged = [*leaves[:changed], leaf_hash(entries[changed] + b"!"), *leaves[changed + 1 :]]
    with pytest.raises(ProofError):
        verify_inclusion(changed, len(leaves), forged[changed], inclusion_proof(changed, leaves), root(leaves))
    if changed + 1 < len(leaves):  # an old checkpoint covering the entry cannot be extended by the forged log
        size1 = data.draw(st.integers(changed + 1, len(leaves) - 1))
        with pytest.raises(ProofError):
            verify_consistency(size1, len(forged), consistency_proof(size1, forged), root(leaves[:size1]), root(forged))


def test_the_empty_tree_and_the_node_hash_are_the_rfcs() -> None:
    assert root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=4), max_size=70))
def test_a_frontier_built_leaf_by_leaf_has_every_roots(entries: list[bytes]) -> None:
    frontier = Frontier()
    assert frontier.root() == EMPTY_ROOT
    leaves = [leaf_hash(e) for e in entries]
    for n, leaf in enumerate(leaves, start=1):
        frontier.add(leaf)
        assert frontier.size == n and frontier.root() == _mth(entries[:n])
