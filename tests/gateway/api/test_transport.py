"""The transport: HTTPS only, the agent endpoint only with a client certificate from the gateway's CA,
a clean stop on SIGTERM, state that survives a restart, and no secret in the gateway's log."""

from __future__ import annotations

import datetime as dt
import json
import signal
import socket
import ssl
import time
from pathlib import Path

import httpx
import pytest

from keyhole.gateway.agents.authority import Issued, create_ca, issue_client
from tests.gateway.harness import ADMIN_PASSWORD, RunningGateway, cli_login, init_state, keyhole, start_gateway


def _plaintext(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = b""
        try:
            while chunk := sock.recv(4096):
                received += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    return received


def test_plaintext_gets_nothing(gateway: RunningGateway) -> None:
    for port in (gateway.port, gateway.agent_port):
        assert b"HTTP/" not in _plaintext(port)
        assert b"status" not in _plaintext(port)


def _agent_get(gateway: RunningGateway, tmp_path: Path, cert: Issued | None) -> httpx.Response:
    context = ssl.create_default_context(cafile=str(gateway.ca))
    if cert is not None:
        (tmp_path / "client.pem").write_bytes(cert.cert_pem)
        (tmp_path / "client.key").write_bytes(cert.key_pem)
        context.load_cert_chain(tmp_path / "client.pem", tmp_path / "client.key")
    with httpx.Client(verify=context, timeout=10) as client:
        return client.get(f"https://127.0.0.1:{gateway.agent_port}/v1/agent/health")


def test_the_agent_endpoint_wants_a_certificate_from_the_gateways_ca(gateway: RunningGateway, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    ca = Issued((gateway.data / "ca.pem").read_bytes(), (gateway.data / "ca.key").read_bytes())
    good = issue_client(ca, "agent-test", dt.timedelta(minutes=10), now)
    assert _agent_get(gateway, tmp_path, good).json() == {"status": "ok"}
    stranger = issue_client(create_ca(now), "agent-test", dt.timedelta(minutes=10), now)
    expired = issue_client(ca, "agent-test", dt.timedelta(minutes=1), now - dt.timedelta(hours=1))
    for cert in (None, stranger, expired):
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            _agent_get(gateway, tmp_path, cert)


def test_a_client_with_another_ca_does_not_trust_the_gateway(gateway: RunningGateway, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.pem"
    other.write_bytes(create_ca(dt.datetime.now(dt.UTC)).cert_pem)
    result = cli_login(gateway.url, other, tmp_path / "config")
    assert result.returncode == 2
    assert "did not present a certificate from the given CA" in result.stderr
    assert not (tmp_path / "config" / "credentials.json").exists()


def test_sigterm_stops_cleanly_and_state_survives_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "state"
    assert init_state(data, tmp_path / "config").returncode == 0
    first = start_gateway(data)
    try:
        login = cli_login(first.url, first.ca, tmp_path / "config")
        assert login.returncode == 0, login.stderr
        added = keyhole(
            "user", "add", "heidi", "--password-stdin", config=tmp_path / "config", stdin="heidi-password-1\n"
        )
        assert added.returncode == 0, added.stderr
    finally:
        assert first.stop(signal.SIGTERM) == 0
    assert "Shutting down" in first.log() and "Traceback" not in first.log()
    config = tmp_path / "config"
    stored = json.loads((config / "credentials.json").read_text())
    log = first.log()
    for secret in (ADMIN_PASSWORD, "heidi-password-1", stored["access_token"], stored["refresh_token"], "$argon2id$"):
        assert secret not in log

    second = start_gateway(data, first.port, first.agent_port)
    try:
        # As if fifteen minutes had passed: the next command must refresh with the refresh token
        # issued before the restart, which proves the logins and the token key were kept.
        stored["access_expires_at"] = time.time() - 1
        (config / "credentials.json").write_text(json.dumps(stored))
        listed = keyhole("user", "list", config=config)
        assert listed.returncode == 0, listed.stderr
        assert "heidi\tengineer" in listed.stdout
        assert json.loads((config / "credentials.json").read_text())["refresh_token"] != stored["refresh_token"]
        heidi = cli_login(second.url, second.ca, tmp_path / "heidi", "heidi", "heidi-password-1")
        assert heidi.returncode == 0, heidi.stderr
    finally:
        second.stop()


def test_a_damaged_state_is_one_line(tmp_path: Path) -> None:
    data = tmp_path / "state"
    assert init_state(data, tmp_path / "config").returncode == 0
    (data / "signing.key").write_text("not a key")
    result = keyhole(
        "gateway",
        "serve",
        "--data",
        str(data),
        "--listen",
        "127.0.0.1:0",
        "--agent-listen",
        "127.0.0.1:0",
        config=tmp_path / "config",
    )
    assert result.returncode == 1
    assert (
        result.stderr.splitlines()[-1] == f"keyhole: the gateway state in {data} is damaged or unreadable: "
        f"{data / 'signing.key'} is not a PEM private key"
    )
    assert "Traceback" not in result.stderr


def test_a_taken_port_is_one_clear_line(gateway: RunningGateway, tmp_path: Path) -> None:
    result = keyhole(
        "gateway",
        "serve",
        "--data",
        str(gateway.data),
        "--listen",
        f"127.0.0.1:{gateway.port}",
        "--agent-listen",
        "127.0.0.1:0",
        config=tmp_path / "config",
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"keyhole: cannot listen on 127.0.0.1:{gateway.port}")
    assert "--listen HOST:PORT" in result.stderr and "Traceback" not in result.stderr
