"""The gateway dies (SIGKILL) while agents are connected: the services do not notice; with the
gateway gone longer than the dead-man grace every agent drops its probes; once the gateway is back,
the agents reconnect and the probes of live sessions come back."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path

from tests.gateway.apps import enroll_token, probe_line, start_service, wait_connected
from tests.gateway.harness import cli_login, init_state, keyhole, start_gateway


def _log_events(config: Path) -> int:
    result = keyhole("events", "--json", config=config)
    assert result.returncode == 0, result.stderr
    return sum(1 for line in result.stdout.splitlines() if json.loads(line)["kind"] == "log")


def test_a_killed_gateway_goes_unnoticed_and_the_probes_come_back_after_it_returns(tmp_path: Path) -> None:
    data, admin = tmp_path / "state", tmp_path / "admin"
    assert init_state(data, tmp_path / "init").returncode == 0
    gateway = start_gateway(data)
    assert cli_login(gateway.url, gateway.ca, admin).returncode == 0
    service = start_service(gateway, admin, token=enroll_token(admin), mode="start", env={"APP_DEADMAN_GRACE": "3"})
    try:
        wait_connected(admin, service.process.pid)
        opened = keyhole("session", "open", "--service", "orders", "--reason", "reliability", config=admin)
        assert opened.returncode == 0, opened.stderr
        assert keyhole("log", f"orders.py:{probe_line()}", "order {order_id}", config=admin).returncode == 0
        service.wait_for(lambda s: s["probes"] == 1)

        gateway.stop(signal.SIGKILL)
        killed_at = service.latest()["order"]
        # The dead-man grace is 3 s: the probe goes, and the service keeps its pace all along.
        service.wait_for(lambda s: s["probes"] == 0, timeout=15)
        time.sleep(1.0)
        latest = service.latest()
        assert latest["order"] - killed_at >= 100, "the service slowed down while the gateway was gone"
        assert latest["slowest_ms"] < 100, latest

        gateway = start_gateway(data, gateway.port, gateway.agent_port)
        wait_connected(admin, service.process.pid, timeout=60)
        service.wait_for(lambda s: s["probes"] == 1, timeout=20)
        before = _log_events(admin)
        deadline = time.monotonic() + 15
        while _log_events(admin) <= before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _log_events(admin) > before, "no events after the gateway came back"
        assert service.latest()["slowest_ms"] < 100
        assert service.process.poll() is None
        assert not any("Traceback" in line for line in service.errors), service.errors
    finally:
        service.stop()
        gateway.stop()


def test_agent_certificates_are_renewed_before_they_expire(tmp_path: Path) -> None:
    data, admin = tmp_path / "state", tmp_path / "admin"
    assert init_state(data, tmp_path / "init").returncode == 0
    gateway = start_gateway(data, cert_ttl="12s")
    assert cli_login(gateway.url, gateway.ca, admin).returncode == 0
    service = start_service(gateway, admin, token=enroll_token(admin), mode="start")
    try:
        wait_connected(admin, service.process.pid)
        time.sleep(16)  # past the first certificate's end: only a renewed one still connects
        opened = keyhole("session", "open", "--service", "orders", "--reason", "renewal", config=admin)
        assert opened.returncode == 0, opened.stderr
        assert keyhole("metric", f"orders.py:{probe_line()}", config=admin).returncode == 0
        service.wait_for(lambda s: s["probes"] == 1, timeout=10)
        assert wait_connected(admin, service.process.pid)["connected"]
        with sqlite3.connect(data / "keyhole.db") as db:
            [(enrolled, expires)] = db.execute("select enrolled_at, cert_expires_at from agent_credentials").fetchall()
        assert expires > enrolled + 16  # the certificate in use now was issued after the first one ended
    finally:
        service.stop()
        gateway.stop()
