"""Who may call what: every route of both apps, read from the apps' own route tables (a new route
fails here until it is given its callers), against each kind of caller. Every refusal of a known
user is a 403 with its reason and an entry in the audit log; a caller with no user token (anonymous,
or an agent's certificate) gets 401; nobody but an enrolled agent gets through the agent endpoint's
TLS. Real gateway, real policy, real enrolment."""

from __future__ import annotations

import json
import re
import sqlite3
import ssl
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import httpx
import pytest

from keyhole.gateway.api.app import create_agent_app, create_user_app
from tests.gateway.harness import ADMIN_PASSWORD, RunningGateway, init_state, start_gateway

POLICY = """\
roles:
  gated:
    services: [orders, billing]
    probes: [snapshot]
    approval: {from: [approver]}
  approver:
    services: [inventory]
    probes: [log]
  admins:
    admin: [users, enrollment, policy, audit]
    observe: ["*"]
users:
  admin: [admins]
  plain: [gated]
  granted: [gated]
  approver: [approver]
"""

ANONYMOUS, PLAIN, GRANTED, APPROVER, ADMIN, AGENT = "anonymous", "plain", "granted", "approver", "admin", "agent"
USERS = (PLAIN, GRANTED, APPROVER, ADMIN)
CALLERS = (ANONYMOUS, *USERS, AGENT)
EVERY_USER = frozenset(USERS)
EVERYONE = frozenset(CALLERS)

# Who gets through, route by route ("plain" is an engineer whose role needs an approval it does not
# have; "granted" has one and owns the session; the admin holds every admin ability and observes
# every service). Routes are named as in the route table.
ALLOWED: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/v1/health"): EVERYONE,
    ("POST", "/v1/auth/login"): EVERYONE,
    ("POST", "/v1/auth/refresh"): EVERYONE,
    ("POST", "/v1/agent/enroll"): EVERYONE,
    ("POST", "/v1/auth/logout"): EVERY_USER,
    ("GET", "/v1/auth/me"): EVERY_USER,
    ("POST", "/v1/users"): frozenset({ADMIN}),
    ("GET", "/v1/users"): frozenset({ADMIN}),
    ("POST", "/v1/enroll-tokens"): frozenset({ADMIN}),
    ("GET", "/v1/agents"): EVERY_USER,
    ("POST", "/v1/agents/{instance}/revoke"): frozenset({ADMIN}),
    ("POST", "/v1/sessions"): frozenset({GRANTED}),
    ("GET", "/v1/sessions"): EVERY_USER,
    ("GET", "/v1/sessions/{session_id}"): frozenset({GRANTED, ADMIN}),
    ("POST", "/v1/sessions/{session_id}/close"): frozenset({GRANTED, ADMIN}),
    ("POST", "/v1/sessions/{session_id}/probes"): frozenset({GRANTED}),
    ("GET", "/v1/sessions/{session_id}/probes"): frozenset({GRANTED, ADMIN}),
    ("GET", "/v1/sessions/{session_id}/probes/{probe_id}"): frozenset({GRANTED, ADMIN}),
    ("DELETE", "/v1/sessions/{session_id}/probes/{probe_id}"): frozenset({GRANTED}),
    ("GET", "/v1/sessions/{session_id}/events"): frozenset({GRANTED, ADMIN}),
    ("GET", "/v1/audit/entries"): frozenset({ADMIN}),
    ("POST", "/v1/audit/checkpoint"): frozenset({ADMIN}),
    ("GET", "/v1/audit/proof/inclusion"): frozenset({ADMIN}),
    ("GET", "/v1/audit/proof/consistency"): frozenset({ADMIN}),
    ("POST", "/v1/access"): frozenset({PLAIN, GRANTED}),
    ("GET", "/v1/access"): EVERY_USER,
    ("POST", "/v1/access/{request_id}/approve"): frozenset({APPROVER}),
    ("POST", "/v1/access/{request_id}/deny"): frozenset({APPROVER}),
    ("POST", "/v1/access/{request_id}/revoke"): frozenset({PLAIN, APPROVER, ADMIN}),
    ("GET", "/v1/policy"): frozenset({ADMIN}),
    ("POST", "/v1/policy"): frozenset({ADMIN}),
}
PUBLIC = {route for route, allowed in ALLOWED.items() if allowed == EVERYONE}
# Run last, as they end what the others look at.
ENDING = [("DELETE", "/v1/sessions/{session_id}/probes/{probe_id}"), ("POST", "/v1/sessions/{session_id}/close")]


def _table(app: Any) -> set[tuple[str, str]]:
    return {(m.upper(), path) for path, ops in app.openapi()["paths"].items() for m in ops}


def test_every_route_of_the_user_api_has_its_callers_here() -> None:
    assert _table(create_user_app(cast(Any, None))) == set(ALLOWED)


@dataclass
class World:
    gateway: RunningGateway
    tokens: dict[str, str]
    agent_tls: ssl.SSLContext
    ids: dict[str, str]


def _client(gateway: RunningGateway, tls: ssl.SSLContext | None = None) -> httpx.Client:
    verify = tls or ssl.create_default_context(cafile=str(gateway.ca))
    return httpx.Client(base_url=gateway.url, verify=verify, timeout=15)


def _login(gateway: RunningGateway, user: str, password: str) -> str:
    with _client(gateway) as client:
        answer = client.post("/v1/auth/login", json={"user": user, "password": password})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def _as(world: World, who: str, method: str, path: str, body: Any = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {world.tokens[who]}"}
    with _client(world.gateway) as client:
        return client.request(method, path, headers=headers, json=body)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from keyhole.agent.link.config import build_config
    from keyhole.agent.link.identity import enroll

    base = tmp_path_factory.mktemp("matrix")
    assert init_state(base / "state", base / "init").returncode == 0
    (base / "policy.yaml").write_text(POLICY)
    gateway = start_gateway(base / "state", policy=base / "policy.yaml")
    try:
        world = World(gateway, {ADMIN: _login(gateway, "admin", ADMIN_PASSWORD)}, ssl.create_default_context(), {})
        for name in (PLAIN, GRANTED, APPROVER):
            made = _as(world, ADMIN, "POST", "/v1/users", {"name": name, "password": f"{name}-password-long"})
            assert made.status_code == 201, made.text
            world.tokens[name] = _login(gateway, name, f"{name}-password-long")
        asked = _as(world, GRANTED, "POST", "/v1/access", {"role": "gated", "service": "orders", "reason": "INC-1"})
        assert asked.status_code == 201, asked.text
        approved = _as(world, APPROVER, "POST", f"/v1/access/{asked.json()['id']}/approve", {"reason": "ok"})
        assert approved.json()["state"] == "approved", approved.text
        # plain's request is for billing: approving it (below) must not let plain onto orders
        pending = _as(world, PLAIN, "POST", "/v1/access", {"role": "gated", "service": "billing", "reason": "INC-2"})
        opened = _as(world, GRANTED, "POST", "/v1/sessions", {"service": "orders", "reason": "INC-1", "ttl": "10m"})
        assert opened.status_code == 201, opened.text
        session = opened.json()["id"]
        probe = _as(
            world, GRANTED, "POST", f"/v1/sessions/{session}/probes", {"kind": "snapshot", "file": "o.py", "line": 3}
        )
        assert probe.status_code == 201, probe.text
        minted = _as(world, ADMIN, "POST", "/v1/enroll-tokens", {"service": "orders"})
        config = build_config(
            gateway.url, service="orders", token=minted.json()["token"], ca=gateway.ca.read_text(), environ={}
        )
        world.agent_tls = enroll(config).context
        world.ids = {"session_id": session, "probe_id": probe.json()["id"], "request_id": pending.json()["id"]}
        world.ids["instance"] = "no-such-instance"
        yield world
    finally:
        gateway.stop()


def _request_for(world: World, method: str, route: str, n: int) -> tuple[str, Any]:
    """A well-formed call of the route, so that an answer other than 401/403 means "let through"."""
    path = re.sub(r"\{(\w+)\}", lambda m: world.ids[m.group(1)], route)
    bodies: dict[tuple[str, str], Any] = {
        ("POST", "/v1/auth/login"): {"user": "nobody", "password": "not-the-password"},
        ("POST", "/v1/auth/refresh"): {"refresh_token": "not-a-token"},
        ("POST", "/v1/agent/enroll"): {
            "token": "not-a-token",
            "service": "orders",
            "public_key": "eA==",
            "proof": "eA==",
        },
        ("POST", "/v1/users"): {"name": f"user{n}", "password": "a-long-enough-password"},
        ("POST", "/v1/enroll-tokens"): {"service": "orders"},
        ("POST", "/v1/sessions"): {"service": "orders", "reason": "matrix", "ttl": "5m"},
        ("POST", "/v1/sessions/{session_id}/probes"): {"kind": "snapshot", "file": "o.py", "line": 4},
        ("POST", "/v1/access"): {"role": "gated", "service": "billing", "reason": "matrix"},
        ("POST", "/v1/access/{request_id}/approve"): {"reason": "matrix"},
        ("POST", "/v1/access/{request_id}/deny"): {"reason": "matrix"},
        ("POST", "/v1/policy"): {"text": POLICY},
    }
    queries = {
        ("GET", "/v1/audit/proof/inclusion"): "?index=0&size=1",
        ("GET", "/v1/audit/proof/consistency"): "?first=1&second=2",
    }
    return path + queries.get((method, route), ""), bodies.get((method, route))


def _call(world: World, who: str, method: str, path: str, body: Any) -> httpx.Response:
    if who == AGENT:
        with _client(world.gateway, world.agent_tls) as client:  # its certificate, but no user token
            return client.request(method, path, json=body)
    if who == ANONYMOUS:
        with _client(world.gateway) as client:
            return client.request(method, path, json=body)
    token = world.tokens[who]
    if (method, path) == ("POST", "/v1/auth/logout"):
        token = _login(world.gateway, who, ADMIN_PASSWORD if who == ADMIN else f"{who}-password-long")
    with _client(world.gateway) as client:
        return client.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})


def _denials(world: World) -> list[dict[str, Any]]:
    with sqlite3.connect(f"file:{world.gateway.data / 'keyhole.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT body FROM audit_entries WHERE action = 'access.denied' ORDER BY seq").fetchall()
    return [json.loads(body) for (body,) in rows]


def test_each_caller_gets_through_exactly_where_the_policy_says(world: World) -> None:
    denied_before = len(_denials(world))
    routes = sorted(ALLOWED, key=lambda route: (route in ENDING, ENDING.index(route) if route in ENDING else 0))
    wrong: list[str] = []
    refused: Counter[tuple[str, str, str]] = Counter()
    for n, (method, route) in enumerate(routes):
        for who in CALLERS:
            path, body = _request_for(world, method, route, n * 10 + CALLERS.index(who))
            answer = _call(world, who, method, path, body)
            allowed = who in ALLOWED[(method, route)]
            if allowed and answer.status_code in (401, 403) and (method, route) not in PUBLIC:
                wrong.append(f"{who} {method} {route}: {answer.status_code} {answer.text}")
            elif not allowed:
                expected = 401 if who in (ANONYMOUS, AGENT) else 403
                said = answer.json() if answer.headers.get("content-type") == "application/json" else {}
                error = said.get("error", "") if isinstance(said, dict) else ""
                if answer.status_code != expected or not error or "\n" in error:
                    wrong.append(f"{who} {method} {route}: {answer.status_code} {answer.text} (wanted {expected})")
                if expected == 403:
                    refused[(f"user:{who}", f"{method} {route}", error)] += 1
            if (method, route) in PUBLIC:
                assert answer.status_code != 403, (who, route)
    assert not wrong, "\n".join(wrong)
    recorded = Counter(
        (d["actor"], d["details"]["route"], d["details"]["reason"]) for d in _denials(world)[denied_before:]
    )
    assert recorded == refused  # each 403, and nothing else, has its audit entry with its reason
    assert len(refused) > 40


def test_the_agent_endpoint_lets_in_only_an_enrolled_agents_certificate(world: World) -> None:
    table = _table(create_agent_app(cast(Any, None)))
    assert table == {
        ("GET", "/v1/agent/health"),
        ("POST", "/v1/agent/hello"),
        ("GET", "/v1/agent/probes"),
        ("POST", "/v1/agent/events"),
        ("POST", "/v1/agent/renew"),
    }
    base = f"https://127.0.0.1:{world.gateway.agent_port}"
    for method, path in sorted(table):
        with httpx.Client(base_url=base, verify=world.agent_tls, timeout=15) as client:
            answer = client.request(method, path, json={})
        assert answer.status_code not in (401, 403), (method, path, answer.text)
        for who in (ANONYMOUS, *USERS):
            user_tls = ssl.create_default_context(cafile=str(world.gateway.ca))
            headers = {"Authorization": f"Bearer {world.tokens[who]}"} if who in world.tokens else {}
            with (
                httpx.Client(base_url=base, verify=user_tls, timeout=15) as client,
                pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)),
            ):
                client.request(method, path, json={}, headers=headers)
