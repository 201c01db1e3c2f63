"""A gateway killed (SIGKILL) in the middle of heavy audited traffic: every action it acknowledged is
in the log, the log verifies, and the restarted gateway goes on signing checkpoints over it."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from pathlib import Path

import httpx

from tests.gateway.harness import ADMIN_PASSWORD, RunningGateway, init_state, keyhole, start_gateway

WORKERS = 8


def _token(gateway: RunningGateway) -> str:
    with gateway.client() as client:
        answer = client.post("/v1/auth/login", json={"user": "admin", "password": ADMIN_PASSWORD})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def _load(gateway: RunningGateway, token: str, worker: int, acknowledged: list[tuple[str, str]]) -> None:
    """Audited actions as fast as one client goes, until the gateway dies: session opens (whose ids
    the log must hold) and new accounts (whose names it must hold)."""
    headers = {"Authorization": f"Bearer {token}"}
    n = 0
    with gateway.client() as client:
        while True:
            n += 1
            try:
                if n % 4:
                    body = {"service": f"svc-{worker}", "reason": "load", "ttl": "5m"}
                    answer = client.post("/v1/sessions", json=body, headers=headers)
                    if answer.status_code == 201:
                        acknowledged.append(("session.open", answer.json()["id"]))
                else:
                    name = f"load-{worker}-{n}"
                    body = {"name": name, "password": "a-long-enough-password"}
                    answer = client.post("/v1/users", json=body, headers=headers)
                    if answer.status_code == 201:
                        acknowledged.append(("user.add", name))
            except httpx.TransportError:
                return


def _logged(data: Path) -> set[tuple[str, str]]:
    with sqlite3.connect(f"file:{data / 'keyhole.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT action, body FROM audit_entries WHERE action IN ('session.open', 'user.add')")
        found = set()
        for action, body in rows:
            details = json.loads(body)["details"]
            found.add((action, details["session"] if action == "session.open" else details["name"]))
    return found


def test_every_acknowledged_action_survives_a_sigkill_and_the_log_verifies(tmp_path: Path) -> None:
    data = tmp_path / "state"
    assert init_state(data, tmp_path / "init").returncode == 0
    gateway = start_gateway(data)
    token = _token(gateway)
    acknowledged: list[tuple[str, str]] = []
    workers = [
        threading.Thread(target=_load, args=(gateway, token, worker, acknowledged), daemon=True)
        for worker in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 150 and time.monotonic() < deadline:
        time.sleep(0.05)
    gateway.stop(signal.SIGKILL)  # in flight: requests being handled, entries being appended
    for worker in workers:
        worker.join(timeout=20)
    assert len(acknowledged) >= 150, "the load did not get going"

    missing = set(acknowledged) - _logged(data)
    assert not missing, f"acknowledged but not in the log: {sorted(missing)[:5]}"
    verified = keyhole("audit", "verify", "--data", str(data), config=tmp_path / "init")
    assert verified.returncode == 0, verified.stdout + verified.stderr

    again = start_gateway(data)
    try:
        login = ["login", "--gateway", again.url, "--ca", str(again.ca), "--user", "admin", "--password-stdin"]
        assert keyhole(*login, config=tmp_path / "cli", stdin=ADMIN_PASSWORD + "\n").returncode == 0
        kept = keyhole("audit", "checkpoint", config=tmp_path / "cli")  # signed over the log the kill left
        assert kept.returncode == 0, kept.stderr
        (tmp_path / "kept.note").write_text(kept.stdout)
        time.sleep(2.5)  # the sweeper signs each second the log grew (the login did): it finds it intact
    finally:
        again.stop()
    assert "no longer extends" not in again.log() and "Traceback" not in again.log()
    verified = keyhole(
        "audit", "verify", "--data", str(data), "--checkpoint", str(tmp_path / "kept.note"), config=tmp_path / "cli"
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
