"""End to end through a real gateway: agents enroll and connect, engineers open sessions and set
probes with the CLI, events come back redacted, and closing a session takes the probes out of every
agent. Agents run in child processes; the CLI runs as a subprocess."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.apps import (
    Service,
    agents,
    blank_line,
    enroll_token,
    probe_line,
    start_service,
    wait_connected,
)
from tests.gateway.harness import RunningGateway, cli_login, keyhole

SECRETS = ("4111 1111 1111 1111", "4111111111111111", "ann@example.com")


@pytest.fixture(scope="module")
def admin(gateway: RunningGateway, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = tmp_path_factory.mktemp("admin") / "config"
    assert cli_login(gateway.url, gateway.ca, config).returncode == 0
    return config


@pytest.fixture(scope="module")
def service(gateway: RunningGateway, admin: Path) -> Iterator[Service]:
    """One service for the module; every test closes its sessions, so none leaves a probe in it."""
    running = start_service(gateway, admin, token=enroll_token(admin, "team=payments"))
    try:
        wait_connected(admin, running.process.pid)
        yield running
    finally:
        running.stop()


def _engineer(gateway: RunningGateway, admin: Path, tmp_path: Path, name: str) -> Path:
    password = f"{name}-password-long"
    added = keyhole("user", "add", name, "--password-stdin", config=admin, stdin=password + "\n")
    assert added.returncode == 0, added.stderr
    config = tmp_path / name
    assert cli_login(gateway.url, gateway.ca, config, user=name, password=password).returncode == 0
    return config


def _open(config: Path) -> str:
    opened = keyhole("session", "open", "--service", "orders", "--reason", "INC-1 orders slow", config=config)
    assert opened.returncode == 0, opened.stderr
    return opened.stdout.split()[1]


@pytest.fixture
def session(admin: Path) -> Iterator[str]:
    """An open session of the admin's, closed after the test whatever happens (the gateway is shared
    by the module: a session left open would send its probes to the next test's service)."""
    opened = _open(admin)
    try:
        yield opened
    finally:
        keyhole("session", "close", opened, config=admin)


def _events(config: Path, *extra: str) -> list[dict[str, object]]:
    result = keyhole("events", "--json", *extra, config=config)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_an_agent_says_hello_with_its_service_process_and_labels(service: Service, admin: Path) -> None:
    [agent] = [a for a in agents(admin) if a["pid"] == service.process.pid]
    assert agent["service"] == "orders" and agent["connected"]
    assert agent["labels"] == {"team": "payments"}
    assert agent["python"].count(".") == 2 and agent["keyhole"]
    assert agent["instance"].startswith("i-")
    readable = keyhole("agents", config=admin)
    assert agent["instance"] in readable.stdout and "connected" in readable.stdout


def test_enrollment_tokens_are_for_admins_and_work_once(
    gateway: RunningGateway, admin: Path, tmp_path: Path, service: Service
) -> None:
    engineer = _engineer(gateway, admin, tmp_path, "erin")
    refused = keyhole("agent", "enroll-token", "--service", "orders", config=engineer)
    assert refused.returncode == 1 and "not an admin" in refused.stderr
    token = enroll_token(admin)
    first = start_service(gateway, admin, token=token, mode="start")
    second = None
    try:
        wait_connected(admin, first.process.pid)
        second = start_service(gateway, admin, token=token, mode="start")
        deadline = time.monotonic() + 15
        while not any("refused" in line for line in second.errors) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert any("enrollment token is not valid" in line for line in second.errors), second.errors
        assert second.process.poll() is None  # the service runs on, without an agent link
        assert second.process.pid not in [a["pid"] for a in agents(admin)]
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_a_snapshot_and_a_logpoint_come_back_redacted(
    gateway: RunningGateway, admin: Path, service: Service, session: str
) -> None:
    line = probe_line()
    snap = keyhole("snap", f"orders.py:{line}", "--watch", "order_id * 3", config=admin)
    assert snap.returncode == 0, snap.stderr
    mine = next(text for text in snap.stdout.splitlines() if text.strip().startswith(service.instance(admin)))
    assert "installed: " in mine and "orders.py" in mine
    log = keyhole("log", f"orders.py:{line}", "order {order_id} mail {email}", config=admin)
    assert log.returncode == 0, log.stderr
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        events = _events(admin)
        if {"snapshot", "log"} <= {e["kind"] for e in events}:
            break
        time.sleep(0.2)
    snapshot = next(e for e in events if e["kind"] == "snapshot")
    assert {"probe", "kind", "ts", "thread", "pid", "frames", "instance"} <= set(snapshot)
    top = snapshot["frames"][0]  # type: ignore[index]
    assert top["function"] == "handle" and top["locals"]["card_number"] == {"@redacted": "secret"}
    assert top["locals"]["email"] == {"@redacted": "pii"}
    assert isinstance(snapshot["watch"]["order_id * 3"], int)  # type: ignore[index]
    message = next(e["message"] for e in events if e["kind"] == "log")
    assert "mail [redacted:pii]" in str(message)
    readable = keyhole("events", config=admin).stdout
    assert "[redacted: secret]" in readable
    for text in (json.dumps(events), readable, gateway.log()):
        assert not any(secret in text for secret in SECRETS)
    only_log = _events(admin, "--probe", str(next(e["probe"] for e in events if e["kind"] == "log")))
    assert only_log and {e["kind"] for e in only_log} == {"log"}


def test_closing_a_session_removes_its_probes_from_every_agent_and_deletes_its_events(
    gateway: RunningGateway, admin: Path, service: Service, session: str
) -> None:
    assert keyhole("metric", f"orders.py:{probe_line()}", config=admin).returncode == 0
    service.wait_for(lambda s: s["probes"] == 1)
    closed = keyhole("session", "close", config=admin)
    assert closed.returncode == 0, closed.stderr
    assert "probes are removed" in closed.stdout and "not yet confirmed" not in closed.stdout
    service.wait_for(lambda s: s["probes"] == 0, timeout=3)
    token = json.loads((admin / "credentials.json").read_text())["access_token"]
    with gateway.client() as client:
        page = client.get(f"/v1/sessions/{session}/events", headers={"Authorization": f"Bearer {token}"}).json()
    assert page["events"] == [] and page["ended"] is True
    again = keyhole("snap", f"orders.py:{probe_line()}", config=admin)
    assert again.returncode == 2 and "no current session" in again.stderr


def test_one_user_cannot_see_or_close_another_users_session(
    gateway: RunningGateway, admin: Path, tmp_path: Path, service: Service, request: pytest.FixtureRequest
) -> None:
    alice = _engineer(gateway, admin, tmp_path, "alice")
    bob = _engineer(gateway, admin, tmp_path, "bob")
    session = _open(alice)
    request.addfinalizer(lambda: keyhole("session", "close", session, config=alice))
    assert keyhole("snap", f"orders.py:{probe_line()}", config=alice).returncode == 0
    listed = keyhole("session", "list", config=bob)
    assert session not in listed.stdout
    closing = keyhole("session", "close", session, config=bob)
    assert closing.returncode == 1 and "another user's" in closing.stderr
    token = json.loads((bob / "credentials.json").read_text())["access_token"]
    with gateway.client() as client:
        for path in (f"/v1/sessions/{session}", f"/v1/sessions/{session}/events", f"/v1/sessions/{session}/probes"):
            answer = client.get(path, headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 403 and "another user's" in answer.json()["error"]
    assert session in keyhole("session", "list", config=alice).stdout
    assert keyhole("session", "close", config=alice).returncode == 0


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["snap", "orders.py:{blank}"], 1, "could install"),
        (["snap", "orders.py:{line}", "--if", "__import__('os')"], 1, "condition"),
        (["snap", "orders.py:{line}", "--if", "card_number == ''"], 1, "redacts"),
        (["log", "orders.py:{line}", "{{email.__class__}}"], 1, "template"),
        (["snap", "orders.py"], 2, "FILE:LINE"),
        (["snap", "orders.py:{line}", "--max-hits", "0"], 1, "max_hits"),
        (["snap", "orders.py:{line}", "--ttl", "forever"], 2, "--ttl"),
        (["fn", "orders"], 1, "MODULE:QUALNAME"),
        (["rm", "p-nope"], 1, "no probe"),
        (["rm", ".."], 2, "not a probe id"),
    ],
)
def test_bad_probes_get_one_line_and_change_nothing(
    admin: Path, service: Service, session: str, args: list[str], code: int, needle: str
) -> None:
    before = keyhole("probes", "--json", config=admin).stdout
    result = keyhole(*[a.format(line=probe_line(), blank=blank_line()) for a in args], config=admin)
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("keyhole: ") and needle in lines[0], result.stderr
    if needle != "could install":  # that one is refused by the agent, per instance, after it was set
        assert keyhole("probes", "--json", config=admin).stdout == before
    else:
        assert "nearest lines with code" in result.stdout


def test_a_probe_expires_on_the_agents_own_clock(admin: Path, service: Service, session: str) -> None:
    assert keyhole("snap", f"orders.py:{probe_line()}", "--ttl", "4s", config=admin).returncode == 0
    service.wait_for(lambda s: s["probes"] == 1)
    service.wait_for(lambda s: s["probes"] == 0, timeout=8)


def test_stacks_shows_the_application_threads_not_keyholes(admin: Path, service: Service, session: str) -> None:
    result = keyhole("stacks", "--json", config=admin)
    assert result.returncode == 0, result.stderr
    [event] = [json.loads(line) for line in result.stdout.splitlines() if str(service.process.pid) in line]
    names = [thread["name"] for thread in event["threads"]]
    assert "MainThread" in names and not any(name.startswith("keyhole-") for name in names)
    listed = keyhole("probes", "--json", config=admin).stdout
    assert all(json.loads(line)["removed"] for line in listed.splitlines())  # stacks cleaned up after itself


def test_a_forked_worker_is_an_agent_instance_of_its_own(
    gateway: RunningGateway, admin: Path, request: pytest.FixtureRequest
) -> None:
    service = start_service(gateway, admin, token=enroll_token(admin), mode="fork")
    try:
        service.wait_for(lambda s: len({line["pid"] for line in service.lines}) == 2)
        pids = {line["pid"] for line in service.lines}
        for pid in pids:
            wait_connected(admin, pid)
        opened = _open(admin)
        request.addfinalizer(lambda: keyhole("session", "close", opened, config=admin))
        assert keyhole("snap", f"orders.py:{probe_line()}", config=admin).returncode == 0
        for pid in pids:
            service.wait_for(lambda s: s["probes"] == 1, pid=pid)
        keyhole("session", "close", config=admin)
        for pid in pids:
            service.wait_for(lambda s: s["probes"] == 0, pid=pid)
    finally:
        service.stop_with_workers()


def test_nobody_reveals_redacted_values_by_asking(gateway: RunningGateway, admin: Path, session: str) -> None:
    token = json.loads((admin / "credentials.json").read_text())["access_token"]
    spec = {"kind": "snapshot", "file": "orders.py", "line": probe_line(), "reveal": ["secret", "pii"]}
    with gateway.client() as client:
        response = client.post(
            f"/v1/sessions/{session}/probes", json=spec, headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 403 and "redacted" in response.json()["error"]
    assert keyhole("probes", "--json", config=admin).stdout == ""


def test_the_gateway_redacts_again_what_a_careless_agent_lets_through(
    gateway: RunningGateway, admin: Path, service: Service, session: str
) -> None:
    """Rule 4 does not rest on every agent being right: an enrolled client that uploads secrets as
    they are (an old agent, a bug, a forged client with a stolen certificate) has them redacted by
    the gateway before anything is stored."""
    from keyhole.agent.link.config import build_config
    from keyhole.agent.link.https_client import JsonClient
    from keyhole.agent.link.identity import enroll
    from keyhole.protocol.link import EVENTS_PATH, HELLO_PATH

    snap = keyhole("snap", f"orders.py:{probe_line()}", config=admin)
    assert snap.returncode == 0, snap.stderr
    [probe] = [json.loads(line)["id"] for line in keyhole("probes", "--json", config=admin).stdout.splitlines()]
    config = build_config(
        gateway.url, service="orders", token=enroll_token(admin), ca=gateway.ca.read_text(), environ={}
    )
    identity = enroll(config)
    client = JsonClient(config.host, identity.agent_port, identity.context)
    try:
        hello = {"instance": "careless-1", "service": "orders", "host": "h", "pid": 1, "python": "3", "keyhole": "0"}
        client.request("POST", HELLO_PATH, hello)
        careless = {
            "probe": probe,
            "kind": "snapshot",
            "ts": "2026-11-21T10:00:00Z",
            "thread": "MainThread",
            "pid": 1,
            "frames": [
                {
                    "file": "orders.py",
                    "line": 1,
                    "function": "handle",
                    "locals": {"password": "hunter2-plain", "note": "card 4111 1111 1111 1111 for ann@example.com"},
                }
            ],
        }
        clean = {**careless, "frames": [{"file": "orders.py", "line": 1, "function": "handle", "locals": {"n": 7}}]}
        refusal = {**clean, "kind": "error", "error": "refused: bad signature near 4111 1111 1111 1111"}
        del refusal["frames"]
        deep: object = "x"
        for _ in range(900):  # too deep to read back (or, on 3.11, to redact): that event goes, not the batch
            deep = [deep]
        too_deep = {**clean, "watch": {"w": deep}}
        batch = {"instance": "careless-1", "events": [careless, clean, refusal, too_deep]}
        answer = client.request("POST", EVENTS_PATH, batch)
    finally:
        client.close()
    assert answer["stored"] == 2 and answer["statuses"] == 1 and answer["dropped"] == 1
    # A refused command is the operator's business too: the gateway logs it (redacted).
    logged = f"agent instance careless-1 refused probe {probe}: 'bad signature near [redacted:card]'"
    deadline = time.monotonic() + 5
    while logged not in gateway.log() and time.monotonic() < deadline:
        time.sleep(0.05)  # the log is read from the gateway's output by another thread
    assert logged in gateway.log()
    reports = keyhole("probes", "--json", config=admin).stdout  # the stored status is redacted too
    assert "bad signature near [redacted:card]" in reports and "4111" not in reports
    stored = [e for e in _events(admin) if e["instance"] == "careless-1"]
    assert [e["frames"][0]["locals"] for e in stored] == [  # type: ignore[index]
        {"password": {"@redacted": "secret"}, "note": "card [redacted:card] for [redacted:pii]"},
        {"n": 7},
    ]
    for text in (json.dumps(stored), keyhole("events", config=admin).stdout, gateway.log()):
        assert "hunter2" not in text and not any(secret in text for secret in SECRETS)


def test_revoking_an_agent_cuts_off_every_process_of_its_enrollment_and_no_other(
    gateway: RunningGateway, admin: Path, service: Service, session: str, tmp_path: Path
) -> None:
    workers = start_service(gateway, admin, token=enroll_token(admin), mode="fork")
    try:
        workers.wait_for(lambda s: len({line["pid"] for line in workers.lines}) == 2)
        pids = {line["pid"] for line in workers.lines}
        instances = {str(wait_connected(admin, pid)["instance"]) for pid in pids}
        assert keyhole("snap", f"orders.py:{probe_line()}", config=admin).returncode == 0
        for pid in pids:
            workers.wait_for(lambda s: s["probes"] == 1, pid=pid)

        engineer = _engineer(gateway, admin, tmp_path, "rita")
        refused = keyhole("agent", "revoke", min(instances), config=engineer)
        assert refused.returncode == 1 and "not an admin" in refused.stderr and refused.stderr.count("\n") == 1

        revoked = keyhole("agent", "revoke", min(instances), config=admin)
        assert revoked.returncode == 0, revoked.stderr
        assert "service orders" in revoked.stdout and all(i in revoked.stdout for i in instances)
        for pid in pids:  # each process learns at its next request, and drops its probes
            workers.wait_for(lambda s: s["probes"] == 0, pid=pid, timeout=10)
        assert any("refused by the gateway" in line for line in workers.errors), workers.errors
        listed = {a["instance"]: a for a in agents(admin)}
        assert all(listed[i]["revoked"] for i in instances)
        assert "revoked" in keyhole("agents", config=admin).stdout

        mine = service.instance(admin)  # another enrollment of the same service is not touched
        assert not listed[mine]["revoked"] and listed[mine]["connected"]
        service.wait_for(lambda s: s["probes"] == 1)

        again = keyhole("agent", "revoke", min(instances), config=admin)
        assert again.returncode == 1 and "already revoked" in again.stderr and again.stderr.count("\n") == 1
        unknown = keyhole("agent", "revoke", "no-such-instance", config=admin)
        assert unknown.returncode == 1 and "keyhole agents" in unknown.stderr and "Traceback" not in unknown.stderr
    finally:
        workers.stop_with_workers()


def _logged(gateway: RunningGateway, action: str) -> list[dict[str, Any]]:
    with sqlite3.connect(f"file:{gateway.data / 'keyhole.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT body FROM audit_entries WHERE action = ? ORDER BY seq", (action,)).fetchall()
    return [json.loads(body) for (body,) in rows]


def _wait_logged(gateway: RunningGateway, action: str, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = [entry for entry in _logged(gateway, action) if match(entry)]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no {action} entry: {_logged(gateway, action)[-3:]}")


def test_the_log_records_a_probe_the_agent_disabled_and_an_agent_that_went_away(
    gateway: RunningGateway, admin: Path, service: Service, session: str
) -> None:
    snap = keyhole("snap", f"orders.py:{probe_line()}", "--max-hits", "1", config=admin)
    assert snap.returncode == 0, snap.stderr
    [probe] = [json.loads(line)["id"] for line in keyhole("probes", "--json", config=admin).stdout.splitlines()]
    instance = service.instance(admin)
    disabled = _wait_logged(gateway, "probe.disabled", lambda e: e["details"]["probe"] == probe)
    assert disabled["actor"] == f"agent:{instance}" and "hit limit" in disabled["details"]["reason"]

    leaving = start_service(gateway, admin, token=enroll_token(admin))
    try:
        gone = leaving.instance(admin)
    finally:
        leaving.stop()
    entry = _wait_logged(gateway, "agent.disconnect", lambda e: e["details"]["instance"] == gone)
    assert entry["actor"] == "gateway"
    assert not [e for e in _logged(gateway, "agent.disconnect") if e["details"]["instance"] == instance]
