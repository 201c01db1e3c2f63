"""`keyhole gateway init`: a complete state, owner-only secrets, and a refusal that changes nothing."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from tests.gateway.harness import ADMIN_PASSWORD, cli_login, init_state, keyhole, start_gateway

SECRETS = ["ca.key", "server.key", "signing.key", "token.key", "keyhole.db"]


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.iterdir())}


def test_init_creates_a_state_with_owner_only_secrets(tmp_path: Path) -> None:
    data = tmp_path / "state"
    result = init_state(data, tmp_path / "config")
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in SECRETS:
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE((data / "ca.pem").stat().st_mode) == 0o644
    # The given password is never echoed.
    assert ADMIN_PASSWORD not in result.stdout + result.stderr

    ca = x509.load_pem_x509_certificate((data / "ca.pem").read_bytes())
    server = x509.load_pem_x509_certificate((data / "server.pem").read_bytes())
    assert server.issuer == ca.subject
    public_key = ca.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(server.signature, server.tbs_certificate_bytes, ec.ECDSA(server.signature_hash_algorithm))
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert any(str(ip) == "127.0.0.1" for ip in names.get_values_for_type(x509.IPAddress))

    with sqlite3.connect(data / "keyhole.db") as db:
        assert db.execute("select version_num from alembic_version").fetchall() == [("0004",)]
        rows = db.execute("select name, role, password_hash from users").fetchall()
    assert [(name, role) for name, role, _ in rows] == [("admin", "admin")]
    assert rows[0][2].startswith("$argon2id$")


def test_init_refuses_an_existing_state_and_changes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "state"
    assert init_state(data, tmp_path / "config").returncode == 0
    before = _snapshot(data)
    again = init_state(data, tmp_path / "config", password="another-password-123")
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1 and "already exists" in again.stderr and "Traceback" not in again.stderr
    assert _snapshot(data) == before


def test_a_generated_admin_password_is_printed_once_and_works(tmp_path: Path) -> None:
    data = tmp_path / "state"
    result = keyhole(
        "gateway", "init", "--data", str(data), config=tmp_path / "config", env={"KEYHOLE_ADMIN_PASSWORD": ""}
    )
    assert result.returncode == 0, result.stderr
    shown = [line for line in result.stdout.splitlines() if "admin password (shown once" in line]
    assert len(shown) == 1
    password = shown[0].rsplit(": ", 1)[1]
    assert password not in (data / "keyhole.db").read_bytes().decode(errors="replace")
    gateway = start_gateway(data)
    try:
        login = cli_login(gateway.url, gateway.ca, tmp_path / "config", password=password)
        assert login.returncode == 0, login.stderr
    finally:
        gateway.stop()


def test_a_weak_admin_password_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    data = tmp_path / "state"
    result = init_state(data, tmp_path / "config", password="short")
    assert result.returncode == 1
    assert "KEYHOLE_ADMIN_PASSWORD" in result.stderr and "12 characters" in result.stderr
    assert not data.exists()


def test_serve_on_a_directory_that_is_not_a_state_says_how_to_make_one(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = keyhole("gateway", "serve", "--data", str(tmp_path / "empty"), config=tmp_path / "config")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "keyhole gateway init --data" in result.stderr


def test_init_where_a_directory_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    result = init_state(tmp_path / "file" / "state", tmp_path / "config")
    assert result.returncode == 1
    assert result.stderr.startswith("keyhole: cannot create the gateway state in ")
    assert result.stderr.count("\n") == 1
