"""`keyhole audit verify --data DIR` as an auditor runs it on a copy of a gateway's data directory: it
reads with the verifier alone (no gateway code, no SQLAlchemy), changes nothing it reads, and each
directory it cannot read is one line naming what is wrong, never a traceback."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gateway.harness import init_state, keyhole


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("verifier")
    assert init_state(root / "state", root / "config").returncode == 0
    return root / "state"


@pytest.fixture
def state(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "state"
    copy.mkdir(mode=0o700)
    for item in pristine.iterdir():
        if item.is_file():
            (copy / item.name).write_bytes(item.read_bytes())
    return copy


def _verify(state: Path) -> tuple[int, str]:
    result = keyhole("audit", "verify", "--data", str(state), config=state.parent / "config")
    assert "Traceback" not in result.stderr
    return result.returncode, (result.stdout + result.stderr).strip()


def _digests(state: Path) -> dict[str, str]:
    return {item.name: hashlib.sha256(item.read_bytes()).hexdigest() for item in sorted(state.iterdir())}


def test_verifying_reads_the_state_and_changes_nothing(state: Path) -> None:
    before = _digests(state)
    code, out = _verify(state)
    assert code == 0, out
    assert out.startswith("audit log verified: ")
    assert _digests(state) == before


def test_only_the_database_and_the_signing_key_are_needed(state: Path) -> None:
    for item in state.iterdir():
        if item.name not in ("keyhole.db", "signing.key"):
            item.unlink()
    code, out = _verify(state)
    assert code == 0, out


def test_a_directory_that_is_not_a_gateway_state_is_named_with_the_fix(tmp_path: Path) -> None:
    code, out = _verify(tmp_path / "nowhere")
    assert code == 1
    assert out.count("\n") == 0
    assert "is not a gateway state (missing keyhole.db, signing.key)" in out
    assert "keyhole gateway init --data" in out
    assert not (tmp_path / "nowhere").exists()


def test_a_damaged_signing_key_is_named(state: Path) -> None:
    (state / "signing.key").write_text("not a key\n")
    code, out = _verify(state)
    assert (code, out.count("\n")) == (1, 0)
    assert "cannot read the gateway's signing key" in out
    assert "is not a PEM private key" in out


def test_a_database_that_is_not_sqlite_is_named(state: Path) -> None:
    (state / "keyhole.db").write_bytes(b"this is not a database" * 100)
    code, out = _verify(state)
    assert (code, out.count("\n")) == (1, 0)
    assert "cannot read the audit log in" in out
    assert "DatabaseError" in out


def test_a_state_from_before_the_audit_log_says_how_to_upgrade(state: Path) -> None:
    with sqlite3.connect(state / "keyhole.db") as db:
        db.execute("DROP TABLE audit_entries")
    code, out = _verify(state)
    assert (code, out.count("\n")) == (1, 0)
    assert "has no audit log yet; start the gateway once to upgrade it" in out


def test_the_verifier_imports_neither_the_gateway_nor_the_cli_nor_their_libraries() -> None:
    script = (
        "import sys, keyhole.verifier.gateway_state, keyhole.verifier.log_check\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'fastapi', 'typer', 'httpx', "
        "'alembic') or m.startswith(('keyhole.gateway', 'keyhole.cli', 'keyhole.agent')))\n"
        "print(bad)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
