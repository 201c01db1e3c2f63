"""The Merkle tree of RFC 9162 (section 2.1): tree hashes, inclusion and consistency proofs, and
their verification. SHA-256, with 0x00 before a leaf and 0x01 before two children, so that a leaf
can never pass for an inner node.

The audit log is such a tree over its entries: a checkpoint (size and root) commits to every entry
before it, an inclusion proof shows one entry is in it, and a consistency proof shows a later
checkpoint extends an earlier one without changing anything the earlier one covered.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from keyhole.verifier.errors import VerifierError

EMPTY_ROOT = hashlib.sha256(b"").digest()
HASH_SIZE = 32


class ProofError(VerifierError):
    """A proof that does not hold; the message says how."""


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n >= 2): where RFC 9162 splits a tree of n leaves."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """The tree hash of these leaf hashes. Level by level, pairing from the left; a last node
    without a partner moves up as it is, which gives the same tree as the RFC's recursion."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


# A function giving the tree hash of the leaves [start, end): proofs need only such ranges, each the
# right part of a split, so a store of complete subtrees answers them in log(n) reads.
RangeRoot = Callable[[int, int], bytes]


# The hash of one complete subtree, from a store of them: (level, index) -> hash, the leaves at level 0.
Subtree = Callable[[int, int], bytes]


def stored_range_root(start: int, end: int, subtree: Subtree) -> bytes:
    """The tree hash of leaves [start, end) from a store of complete subtrees: the subtrees from the
    left, largest first, folded from the right, as RFC 9162 splits a tree. `start` must be where a
    split puts it."""
    if start >= end:
        return EMPTY_ROOT
    parts: list[bytes] = []
    at = start
    while at < end:
        level = (end - at).bit_length() - 1
        while at % (1 << level):
            level -= 1
        parts.append(subtree(level, at >> level))
        at += 1 << level
    value = parts[-1]
    for left in reversed(parts[:-1]):
        value = node_hash(left, value)
    return value


def inclusion_path(index: int, size: int, range_root: RangeRoot) -> list[bytes]:
    """PATH(index, D[size]) of RFC 9162 2.1.3.1, leaf side first."""
    if not 0 <= index < size:
        raise ProofError(f"no entry {index} in a tree of {size}")
    start, end = 0, size
    ranges: list[tuple[int, int]] = []
    while end - start > 1:
        k = _split(end - start)
        if index - start < k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    return [range_root(lo, hi) for lo, hi in reversed(ranges)]


def consistency_path(size1: int, size2: int, range_root: RangeRoot) -> list[bytes]:
    """PROOF(size1, D[size2]) of RFC 9162 2.1.4.1."""
    if not 0 < size1 <= size2:
        raise ProofError(f"no consistency proof from size {size1} to size {size2}")
    ranges: list[tuple[int, int]] = []
    start, end, m, whole = 0, size2, size1, True
    while True:
        n = end - start
        if m == n:
            if not whole:
                ranges.append((start, end))
            break
        k = _split(n)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start, m, whole = start + k, m - k, False
    return [range_root(lo, hi) for lo, hi in reversed(ranges)]


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    return inclusion_path(index, len(leaves), lambda lo, hi: root(leaves[lo:hi]))


def consistency_proof(size1: int, leaves: Sequence[bytes]) -> list[bytes]:
    return consistency_path(size1, len(leaves), lambda lo, hi: root(leaves[lo:hi]))


class Frontier:
    """The tree built leaf by leaf in memory: the hashes of its complete subtrees, largest first
    (at most log2(n) of them). Reading a log of any length from start to end needs only this."""

    def __init__(self) -> None:
        self.size = 0
        self._subtrees: list[tuple[int, bytes]] = []  # (level, hash)

    def add(self, leaf: bytes) -> None:
        level, value = 0, leaf
        while self._subtrees and self._subtrees[-1][0] == level:
            _, left = self._subtrees.pop()
            level, value = level + 1, node_hash(left, value)
        self._subtrees.append((level, value))
        self.size += 1

    def root(self) -> bytes:
        if not self._subtrees:
            return EMPTY_ROOT
        value = self._subtrees[-1][1]
        for _, left in reversed(self._subtrees[:-1]):
            value = node_hash(left, value)
        return value


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes) -> None:
    """RFC 9162 2.1.3.2; raises ProofError unless the leaf hash is at index in the tree."""
    if not 0 <= index < size:
        raise ProofError(f"entry {index} is outside a tree of {size}")
    if len(leaf) != HASH_SIZE:
        raise ProofError(f"a leaf hash has {HASH_SIZE} bytes, not {len(leaf)}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("the inclusion proof is shorter than the tree is deep")
    if r != expected_root:
        raise ProofError("the inclusion proof does not lead to the root")


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """RFC 9162 2.1.4.2; raises ProofError unless the tree of size2 with root2 extends the tree of
    size1 with root1. An empty first tree proves nothing and is refused."""
    if size1 > size2:
        raise ProofError(f"a tree of {size1} cannot be followed by a smaller one of {size2}")
    if size1 == 0:
        raise ProofError("consistency with an empty tree proves nothing")
    if size1 == size2:
        if proof:
            raise ProofError("trees of the same size need an empty consistency proof")
        if root1 != root2:
            raise ProofError("two trees of the same size have different roots")
        return
    if not proof:
        raise ProofError("the consistency proof is empty")
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # a power of two: the first tree is a subtree of the second
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("the consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("the consistency proof is shorter than the tree is deep")
    if fr != root1:
        raise ProofError("the consistency proof does not lead to the first root")
    if sr != root2:
        raise ProofError("the consistency proof does not lead to the second root")
