"""Checkpoints as C2SP signed notes (c2sp.org/signed-note, c2sp.org/tlog-checkpoint):

    <origin>
    <tree size>
    <root hash, base64>

    — <key name> <base64 of: 4-byte key id, then the ed25519 signature of the text above the blank line>

The key id is the first 4 bytes of SHA-256(key name, a newline, the byte 0x01, the public key), so
a verifier holding the gateway's public key knows which signature line is the gateway's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from keyhole.verifier.errors import VerifierError

_DASH = "\u2014"  # the em dash that starts a signature line


class NoteError(VerifierError):
    """A checkpoint that is malformed or not signed by the key it should be."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(name: str, key: Ed25519PublicKey) -> bytes:
    return hashlib.sha256(name.encode() + b"\n\x01" + _raw(key)).digest()[:4]


def origin_for(key: Ed25519PublicKey) -> str:
    """The log's name: one per gateway signing key."""
    return f"keyhole.audit/{hashlib.sha256(_raw(key)).hexdigest()[:16]}"


def sign(checkpoint: Checkpoint, key: Ed25519PrivateKey) -> str:
    text = f"{checkpoint.origin}\n{checkpoint.size}\n{base64.b64encode(checkpoint.root).decode()}\n"
    name = checkpoint.origin
    blob = key_id(name, key.public_key()) + key.sign(text.encode())
    return f"{text}\n{_DASH} {name} {base64.b64encode(blob).decode()}\n"


def open_note(note: str, key: Ed25519PublicKey) -> Checkpoint:
    """The checkpoint in a note, once a signature line by `key` (under the log's own name) checks."""
    text, sep, signatures = note.replace("\r\n", "\n").partition("\n\n")  # a copy may have passed through Windows
    if not sep or text.count("\n") != 2:
        raise NoteError("not a checkpoint: expected origin, size and root, a blank line, then signatures")
    origin, size_text, root_text = text.split("\n")
    try:
        size = int(size_text)
        root = base64.b64decode(root_text, validate=True)
    except (ValueError, binascii.Error):
        raise NoteError("not a checkpoint: the size or the root is malformed") from None
    if size < 0 or len(root) != 32 or size_text != str(size):
        raise NoteError("not a checkpoint: the size or the root is malformed")
    wanted = key_id(origin, key)
    signed = (text + "\n").encode()
    for line in signatures.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != _DASH or parts[1] != origin:
            continue
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except binascii.Error:
            continue
        if len(blob) == 68 and blob[:4] == wanted:
            try:
                key.verify(blob[4:], signed)
            except InvalidSignature:
                raise NoteError(f"the signature on the checkpoint of size {size} does not verify") from None
            return Checkpoint(origin, size, root)
    raise NoteError(f"the checkpoint of size {size} has no signature by this gateway's key")
