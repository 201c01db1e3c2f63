"""A gateway serving a policy: deny by default, each refusal a 403 with its reason and an audit
entry, each role's reveal carried in the signed probe so that the agent redacts for the viewer, and
SIGHUP reloading the file (a broken one changes nothing). Real gateway, real agent, CLI as subprocess."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.apps import Service, enroll_token, probe_line, start_service, wait_connected
from tests.gateway.harness import RunningGateway, cli_login, init_state, keyhole, start_gateway

POLICY = """\
roles:
  oncall:
    services: [orders]
    probes: [snapshot, log, metric, stacks]
    max_session: 30m
  lead:
    services: ["*"]
    probes: [snapshot, log, metric, function, exception, stacks]
    max_session: 2h
    reveal: [pii]
    observe: [orders]
  gated:
    services: [payments]
    probes: [snapshot]
    approval: {from: [lead]}
  deep:
    services: [orders]
    probes: [function]
    approval: {from: [lead]}
  admins:
    admin: [users, enrollment, policy, audit]
  watch:
    observe: [orders]
  hr:
    admin: [users]
users:
  admin: [admins]
  dave: [watch]
  erin: [hr]
  frank: [admins]
  alice: [oncall, gated, deep]
  bob: [lead]
  carol: [gated]
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGateway, Path]]:
    base = tmp_path_factory.mktemp("policy")
    assert init_state(base / "state", base / "init").returncode == 0
    policy = base / "policy.yaml"
    policy.write_text(POLICY)
    running = start_gateway(base / "state", policy=policy)
    try:
        yield running, policy
    finally:
        running.stop()


@pytest.fixture(scope="module")
def users(served: tuple[RunningGateway, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    gateway, _ = served
    base = tmp_path_factory.mktemp("users")
    configs = {"admin": base / "admin"}
    assert cli_login(gateway.url, gateway.ca, configs["admin"]).returncode == 0
    for name in ("alice", "bob", "carol", "dave", "erin"):
        password = f"{name}-password-long"
        added = keyhole("user", "add", name, "--password-stdin", config=configs["admin"], stdin=password + "\n")
        assert added.returncode == 0, added.stderr
        configs[name] = base / name
        assert cli_login(gateway.url, gateway.ca, configs[name], user=name, password=password).returncode == 0
    return configs


@pytest.fixture(scope="module")
def service(served: tuple[RunningGateway, Path], users: dict[str, Path]) -> Iterator[Service]:
    gateway, _ = served
    running = start_service(gateway, users["admin"], token=enroll_token(users["admin"]))
    try:
        wait_connected(users["admin"], running.process.pid)
        yield running
    finally:
        running.stop()


def _denials(gateway: RunningGateway) -> list[dict[str, object]]:
    with sqlite3.connect(f"file:{gateway.data / 'keyhole.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT body FROM audit_entries WHERE action = 'access.denied' ORDER BY seq").fetchall()
    return [json.loads(body) for (body,) in rows]


def _cli(config: Path, *args: str) -> tuple[int, str]:
    """A keyhole command's exit code and its output, which is never a traceback."""
    result = keyhole(*args, config=config)
    assert "Traceback" not in result.stderr
    return result.returncode, (result.stdout + result.stderr).strip()


def _open(config: Path, service: str, ttl: str = "15m") -> tuple[int, str]:
    return _cli(config, "session", "open", "--service", service, "--reason", "INC-9 policy", "--ttl", ttl)


def test_a_role_reaches_only_its_services_for_only_its_time(
    served: tuple[RunningGateway, Path], users: dict[str, Path]
) -> None:
    gateway, _ = served
    before = len(_denials(gateway))
    code, out = _open(users["alice"], "billing")
    assert code == 1 and out.count("\n") == 0 and "no role of yours reaches service 'billing'" in out
    code, out = _open(users["alice"], "orders", ttl="45m")
    assert code == 1 and "at most 30m" in out
    code, out = _open(users["alice"], "payments")
    assert code == 1 and "need an approval" in out and "keyhole access request --role gated" in out
    code, out = _open(users["admin"], "orders")  # an admin administers; debugging takes a role too
    assert code == 1 and "no role of yours" in out
    denied = _denials(gateway)[before:]
    assert [d["actor"] for d in denied] == ["user:alice"] * 3 + ["user:admin"]
    assert all(d["details"]["refused"] == "session.open" for d in denied)  # type: ignore[index]
    code, out = _open(users["bob"], "billing", ttl="90m")
    assert code == 0, out
    assert keyhole("session", "close", config=users["bob"]).returncode == 0


def _snapshots(config: Path) -> list[dict[str, Any]]:
    """The current session's snapshot events, once there is one (15 s at most)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        result = keyhole("events", "--json", config=config)
        found = [json.loads(e) for e in result.stdout.splitlines() if json.loads(e)["kind"] == "snapshot"]
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"no snapshot in the session of {config.name}")


def test_probe_kinds_follow_the_role_and_reveal_is_the_viewers(
    served: tuple[RunningGateway, Path], users: dict[str, Path], service: Service
) -> None:
    line = f"orders.py:{probe_line()}"
    shown: dict[str, dict[str, object]] = {}
    for name in ("alice", "bob"):
        config = users[name]
        assert _open(config, "orders")[0] == 0
        try:
            if name == "alice":
                refused = keyhole("fn", "orders:handle", config=config)
                assert refused.returncode == 1 and "do not grant function probes" in refused.stderr
            snap = keyhole("snap", line, config=config)
            assert snap.returncode == 0, snap.stderr
            shown[name] = _snapshots(config)[0]["frames"][0]["locals"]
        finally:
            keyhole("session", "close", config=config)
    assert shown["alice"]["email"] == {"@redacted": "pii"}
    assert shown["bob"]["email"] == "ann@example.com"  # his role reveals pii
    assert shown["bob"]["card_number"] == {"@redacted": "secret"}  # and nothing else


def test_sighup_reloads_the_policy_and_a_broken_file_changes_nothing(
    served: tuple[RunningGateway, Path], users: dict[str, Path]
) -> None:
    gateway, policy = served
    policy.write_text(POLICY.replace("    services: [orders]\n", "    servics: [orders]\n"))
    gateway.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "the policy in force stays" not in gateway.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "line 3: unknown field 'servics' in role oncall" in gateway.log()
    code, _ = _open(users["alice"], "orders")
    assert code == 0
    keyhole("session", "close", config=users["alice"])

    policy.write_text(POLICY.replace("  alice: [oncall, gated, deep]\n", ""))
    gateway.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    code, out = 0, ""
    while time.monotonic() < deadline:
        code, out = _open(users["alice"], "orders")
        if code != 0:
            break
        keyhole("session", "close", config=users["alice"])
        time.sleep(0.2)
    assert code == 1 and "no role of yours" in out
    policy.write_text(POLICY)
    gateway.process.send_signal(signal.SIGHUP)


def test_a_policy_that_does_not_validate_stops_the_gateway_from_starting(tmp_path: Path) -> None:
    assert init_state(tmp_path / "state", tmp_path / "init").returncode == 0
    broken = tmp_path / "policy.yaml"
    broken.write_text("roles:\n  a:\n    probes: [snapshot]\n")
    result = keyhole(
        "gateway",
        "serve",
        "--data",
        str(tmp_path / "state"),
        "--listen",
        "127.0.0.1:0",
        "--agent-listen",
        "127.0.0.1:0",
        "--policy",
        str(broken),
        config=tmp_path / "c",
        timeout=30,
    )
    assert result.returncode == 1 and "line 2: role a needs services" in result.stderr
    assert "Traceback" not in result.stderr


def _access(config: Path, *args: str) -> tuple[int, str]:
    return _cli(config, "access", *args)


def test_just_in_time_access_is_approved_by_another_and_its_revocation_ends_the_session(
    served: tuple[RunningGateway, Path], users: dict[str, Path]
) -> None:
    gateway, _ = served
    alice, bob, carol = users["alice"], users["bob"], users["carol"]
    code, out = _access(alice, "request", "--role", "oncall", "--service", "orders", "--reason", "x")
    assert code == 1 and "needs no approval" in out
    code, out = _access(alice, "request", "--role", "lead", "--service", "payments", "--reason", "x")
    assert code == 1 and "you do not hold role 'lead'" in out
    code, out = _access(
        alice, "request", "--role", "gated", "--service", "payments", "--reason", "INC-5", "--ttl", "10m"
    )
    assert code == 0, out
    request_id = out.split()[2].rstrip(":")

    assert request_id in _access(bob, "list", "--pending")[1]  # bob holds an approver role
    denied_before = len(_denials(gateway))
    code, out = _access(alice, "approve", request_id)
    assert code == 1 and "nobody approves or denies their own request" in out
    refused = [d["details"]["refused"] for d in _denials(gateway)[denied_before:]]  # type: ignore[index]
    assert refused == ["POST /v1/access/{request_id}/approve"]
    code, out = _access(carol, "approve", request_id)
    assert code == 1 and "needs one of the roles lead" in out
    code, out = _access(bob, "approve", request_id, "--reason", "on call tonight")
    assert code == 0 and "granted" in out
    code, out = _access(bob, "approve", request_id)
    assert code == 1 and "not pending" in out

    code, out = _open(alice, "payments", ttl="20m")  # longer than the grant has left
    assert code == 1 and "at most" in out
    code, out = _open(alice, "payments", ttl="5m")
    assert code == 0, out
    session = out.split()[1]
    assert keyhole("snap", "orders.py:12", config=alice).returncode in (0, 1)  # set (no agent of payments)

    code, out = _access(bob, "revoke", request_id)
    assert code == 0, out
    listed = keyhole("session", "list", config=alice).stdout
    assert next(line for line in listed.splitlines() if session in line).split()[4] == "revoked"
    code, out = _open(alice, "payments", ttl="5m")
    assert code == 1 and "need an approval" in out

    code, out = _access(
        alice, "request", "--role", "gated", "--service", "payments", "--reason", "again", "--ttl", "30m"
    )
    assert code == 1 and "from 1m to its longest session, 15m" in out
    code, out = _access(
        alice, "request", "--role", "gated", "--service", "payments", "--reason", "again", "--ttl", "9m"
    )
    assert code == 0, out
    second = out.split()[2].rstrip(":")
    denied = _access(bob, "deny", second)
    assert denied[0] == 0, denied
    assert _access(bob, "approve", second)[0] == 1
    with sqlite3.connect(f"file:{gateway.data / 'keyhole.db'}?mode=ro", uri=True) as db:
        actions = [
            a for (a,) in db.execute("SELECT action FROM audit_entries WHERE action LIKE 'access.%' ORDER BY seq")
        ]
    for step in ("access.request", "access.approve", "access.revoke", "access.deny"):
        assert step in actions


def test_a_session_keeps_the_grant_it_was_opened_under_not_one_that_comes_later(
    served: tuple[RunningGateway, Path], users: dict[str, Path]
) -> None:
    alice, bob = users["alice"], users["bob"]
    assert _open(alice, "orders")[0] == 0  # through oncall, which needs no approval
    try:
        code, out = _access(alice, "request", "--role", "deep", "--service", "orders", "--reason", "INC-6")
        assert code == 0, out  # no --ttl: 30m, or the role's longest session (15m) if shorter
        request_id = out.split()[2].rstrip(":")
        assert _access(bob, "approve", request_id)[0] == 0
        listed = [json.loads(x) for x in keyhole("access", "list", "--json", config=alice).stdout.splitlines()]
        granted = next(x for x in listed if x["id"] == request_id)
        assert granted["state"] == "approved" and 14 * 60 < granted["granted_until"] - time.time() <= 15 * 60
        refused = keyhole("fn", "orders:handle", config=alice)  # this session was opened without the grant
        assert refused.returncode == 1 and "do not grant function probes" in refused.stderr
    finally:
        keyhole("session", "close", config=alice)


def _session_state(config: Path, session: str) -> str:
    listed = keyhole("session", "list", config=config).stdout
    return next(line for line in listed.splitlines() if session in line).split()[4]


def test_an_observer_watches_and_ends_others_sessions_on_the_services_it_observes(
    served: tuple[RunningGateway, Path], users: dict[str, Path]
) -> None:
    gateway, _ = served
    alice, bob, carol = users["alice"], users["bob"], users["carol"]
    code, out = _open(alice, "orders")
    assert code == 0, out
    session = out.split()[1]
    try:
        assert session in keyhole("session", "list", "--all", config=bob).stdout  # lead observes orders
        assert session not in keyhole("session", "list", "--all", config=carol).stdout
        before = len(_denials(gateway))
        with gateway.client() as client:
            for name, config, status in (("bob", bob, 200), ("carol", carol, 403)):
                token = json.loads((config / "credentials.json").read_text())["access_token"]
                answer = client.get(f"/v1/sessions/{session}/events", headers={"Authorization": f"Bearer {token}"})
                assert answer.status_code == status, (name, answer.text)
        denied = _denials(gateway)[before:]
        assert [(d["actor"], d["details"]["route"]) for d in denied] == [  # type: ignore[index]
            ("user:carol", "GET /v1/sessions/{session_id}/events")
        ]
        assert _cli(carol, "session", "close", session)[0] == 1
        code, out = _cli(bob, "session", "close", session)
        assert code == 0, out
        assert _session_state(alice, session) == "closed"
    finally:
        keyhole("session", "close", config=alice)


def _entries(gateway: RunningGateway, action: str) -> list[dict[str, object]]:
    with sqlite3.connect(f"file:{gateway.data / 'keyhole.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT body FROM audit_entries WHERE action = ? ORDER BY seq", (action,)).fetchall()
    return [json.loads(body) for (body,) in rows]


def test_policy_apply_is_for_policy_admins_refused_whole_and_withdraws_what_it_no_longer_allows(
    served: tuple[RunningGateway, Path], users: dict[str, Path], service: Service, tmp_path: Path
) -> None:
    gateway, policy_file = served
    admin, alice, bob = users["admin"], users["alice"], users["bob"]
    applied_before = len(_entries(gateway, "policy.apply"))
    candidate = tmp_path / "new.yaml"

    candidate.write_text(POLICY.replace("  alice: [oncall, gated, deep]\n", ""))
    code, out = _cli(bob, "policy", "apply", str(candidate))
    assert code == 1 and "'policy' admin ability" in out and "\n" not in out
    candidate.write_text(POLICY.replace("    max_session: 30m\n", "    max_session: 30 minutes\n"))
    code, out = _cli(admin, "policy", "apply", str(candidate))
    assert code == 1 and "line 5: role oncall's max_session" in out and "nothing changed" in out
    candidate.write_text(POLICY.replace("  admin: [admins]\n", ""))
    code, out = _cli(admin, "policy", "apply", str(candidate))
    assert code == 1 and "nobody could change it again" in out
    code, out = _cli(admin, "policy", "apply", str(tmp_path / "missing.yaml"))
    assert code == 2 and "cannot read" in out
    assert len(_entries(gateway, "policy.apply")) == applied_before
    assert policy_file.read_text() == POLICY
    assert _cli(admin, "policy", "show")[1] == POLICY.rstrip("\n")

    code, out = _open(alice, "orders")
    assert code == 0, out
    session = out.split()[1]
    assert keyhole("snap", f"orders.py:{probe_line()}", config=alice).returncode == 0
    try:
        without_alice = POLICY.replace("  alice: [oncall, gated, deep]\n", "")
        candidate.write_text(without_alice)
        code, out = _cli(admin, "policy", "apply", str(candidate))
        assert code == 0 and "sessions ended (no longer allowed): " + session in out, out
        assert _session_state(alice, session) == "revoked"
        assert policy_file.read_text() == without_alice  # kept for SIGHUP and restarts
        recorded = _entries(gateway, "policy.apply")[-1]
        assert recorded["actor"] == "user:admin"
        assert recorded["details"]["sessions_ended"] == [session]  # type: ignore[index]
        code, out = _open(alice, "orders")
        assert code == 1 and "no role of yours" in out
    finally:
        candidate.write_text(POLICY)
        assert _cli(admin, "policy", "apply", str(candidate))[0] == 0
    assert _open(alice, "orders")[0] == 0
    keyhole("session", "close", config=alice)


def test_the_agents_list_shows_only_the_services_a_users_roles_reach(users: dict[str, Path], service: Service) -> None:
    def services(name: str) -> set[str]:
        listed = keyhole("agents", "--json", config=users[name])
        assert listed.returncode == 0, listed.stderr
        return {json.loads(line)["service"] for line in listed.stdout.splitlines()}

    assert "orders" in services("alice")  # oncall reaches orders
    assert "orders" in services("admin")  # the enrollment ability sees every agent
    assert "orders" not in services("carol")  # gated reaches payments only


def test_an_observer_sees_only_what_the_observers_own_roles_reveal(
    served: tuple[RunningGateway, Path], users: dict[str, Path], service: Service
) -> None:
    gateway, _ = served
    bob = users["bob"]
    code, out = _open(bob, "orders")
    assert code == 0, out
    session = out.split()[1]
    try:
        assert keyhole("snap", f"orders.py:{probe_line()}", config=bob).returncode == 0
        mine = _snapshots(bob)
        assert mine[0]["frames"][0]["locals"]["email"] == "ann@example.com"  # bob's role reveals pii
        token = json.loads((users["dave"] / "credentials.json").read_text())["access_token"]
        with gateway.client() as client:
            answer = client.get(f"/v1/sessions/{session}/events", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
        watched = [e for e in answer.json()["events"] if e["kind"] == "snapshot"]
        assert watched and watched[0]["frames"][0]["locals"]["email"] == {"@redacted": "pii"}
        assert "ann@example.com" not in answer.text
    finally:
        keyhole("session", "close", config=bob)


def test_the_users_ability_cannot_make_an_account_the_policy_gives_more(users: dict[str, Path]) -> None:
    erin = users["erin"]  # holds users, not policy
    refused = keyhole("user", "add", "frank", "--password-stdin", config=erin, stdin="frank-password-long\n")
    assert refused.returncode == 1 and "admin abilities you do not hold" in refused.stderr
    added = keyhole("user", "add", "gina", "--password-stdin", config=erin, stdin="gina-password-long\n")
    assert added.returncode == 0, added.stderr
    code, out = _cli(erin, "policy", "show")
    assert code == 1 and "'policy' admin ability" in out
