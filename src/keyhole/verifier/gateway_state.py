"""An audit log as a gateway keeps it in its data directory, read offline with the standard library's
sqlite3 (`keyhole audit verify --data DIR`): the entries, the stored Merkle tree and the signed
checkpoints from keyhole.db, and the key that signed them from signing.key. The gateway may be
running: everything is read in one read transaction, a consistent snapshot that holds up no writer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Generator
from pathlib import Path

from keyhole.verifier.errors import VerifierError
from keyhole.verifier.keys import load_signing_key
from keyhole.verifier.log_check import Row, Verified, stored_checkpoints, verify_stored
from keyhole.verifier.merkle import consistency_path, stored_range_root

# The files of a gateway's data directory that hold the log (keyhole.gateway.storage.state_paths).
DATABASE = "keyhole.db"
SIGNING_KEY = "signing.key"
_BATCH = 10_000
_ENTRIES = (
    "SELECT e.seq, e.body, n.hash, e.action, e.actor, e.at FROM audit_entries AS e"
    " LEFT JOIN audit_nodes AS n ON n.level = 0 AND n.idx = e.seq ORDER BY e.seq"
)


def _entries(db: sqlite3.Connection) -> Generator[Row, None, None]:
    """Every entry with its stored leaf hash, in order, a batch at a time (a log of millions)."""
    cursor = db.execute(_ENTRIES)
    try:
        while batch := cursor.fetchmany(_BATCH):
            yield from batch
    finally:
        cursor.close()


def _consistency(db: sqlite3.Connection, size1: int, size2: int) -> list[bytes]:
    def subtree(level: int, idx: int) -> bytes:
        found = db.execute("SELECT hash FROM audit_nodes WHERE level = ? AND idx = ?", (level, idx)).fetchone()
        if found is None or not isinstance(found[0], bytes):
            raise LookupError(f"the audit tree lacks node ({level}, {idx})")
        hash_: bytes = found[0]
        return hash_

    return consistency_path(size1, size2, lambda lo, hi: stored_range_root(lo, hi, subtree))


def verify_state(root: Path, kept_note: str | None = None) -> Verified:
    """Verify the log of a gateway's data directory as it is on disk; raises Tampered at the first
    problem, VerifierError when the log cannot be read."""
    database, key_file = root / DATABASE, root / SIGNING_KEY
    missing = [path.name for path in (database, key_file) if not path.is_file()]
    if missing:
        raise VerifierError(
            f"{root} is not a gateway state (missing {', '.join(missing)}); "
            f"create one with: keyhole gateway init --data {root}"
        )
    try:
        key = load_signing_key(key_file).public_key()
    except (OSError, ValueError) as exc:
        raise VerifierError(f"cannot read the gateway's signing key: {exc}") from None
    try:
        # mode=rw: a file that vanished is an error here, never a new empty database.
        db = sqlite3.connect(f"{database.resolve().as_uri()}?mode=rw", uri=True, timeout=5.0, isolation_level=None)
    except sqlite3.Error as exc:
        raise VerifierError(f"cannot read the audit log in {database}: {type(exc).__name__}") from None
    entries = _entries(db)
    try:
        db.execute("BEGIN")
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "audit_entries" not in tables:
            raise VerifierError(f"the state in {root} has no audit log yet; start the gateway once to upgrade it")
        checkpoints = stored_checkpoints(db.execute("SELECT size, note FROM audit_checkpoints ORDER BY size"), key)
        return verify_stored(entries, checkpoints, lambda size1, size2: _consistency(db, size1, size2), key, kept_note)
    except sqlite3.Error as exc:
        raise VerifierError(f"cannot read the audit log in {database}: {type(exc).__name__}") from None
    finally:
        entries.close()  # a check that stopped part way leaves the cursor open: close it before the database
        db.close()
