"""The webhook: access requests, approvals, denials and refusals reach a real HTTP receiver as JSON
signed with HMAC-SHA256, after they are recorded; a slow receiver holds up no action; a bad
webhook setting is one line at start."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.gateway.harness import ADMIN_PASSWORD, RunningGateway, init_state, keyhole, start_gateway

POLICY = """\
roles:
  gated: {services: [payments], probes: [snapshot], approval: {from: [lead]}}
  lead: {services: [orders], probes: [snapshot]}
  admins: {admin: [users, enrollment, policy, audit]}
users:
  admin: [admins]
  alice: [gated]
  bob: [lead]
"""
SECRET = b"a-webhook-secret-of-some-length"


class Receiver:
    def __init__(self, delay: float = 0.0) -> None:
        self.received: list[tuple[str, bytes]] = []  # (signature header, body)
        self.delay = delay
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay)
                receiver.received.append((self.headers.get("X-Keyhole-Signature", ""), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]

    def wait_for(self, count: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)


def _verifies(header: str, body: bytes, secret: bytes = SECRET) -> bool:
    fields = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(secret, fields["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return abs(int(fields["t"]) - time.time()) < 60 and hmac.compare_digest(expected, fields["v1"])


@pytest.fixture
def hooked(tmp_path: Path) -> Iterator[tuple[RunningGateway, Receiver, dict[str, str]]]:
    receiver = Receiver()
    assert init_state(tmp_path / "state", tmp_path / "init").returncode == 0
    (tmp_path / "policy.yaml").write_text(POLICY)
    (tmp_path / "secret").write_bytes(SECRET + b"\n")
    extra = ("--webhook", receiver.url, "--webhook-secret-file", str(tmp_path / "secret"))
    gateway = start_gateway(tmp_path / "state", policy=tmp_path / "policy.yaml", extra=extra)
    try:
        tokens = {"admin": _login(gateway, "admin", ADMIN_PASSWORD)}
        for name in ("alice", "bob"):
            made = _call(gateway, tokens["admin"], "POST", "/v1/users", {"name": name, "password": f"{name}-pw-long1"})
            assert made.status_code == 201, made.text
            tokens[name] = _login(gateway, name, f"{name}-pw-long1")
        yield gateway, receiver, tokens
    finally:
        gateway.stop()
        receiver.server.shutdown()


def _login(gateway: RunningGateway, user: str, password: str) -> str:
    with gateway.client() as client:
        answer = client.post("/v1/auth/login", json={"user": user, "password": password})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def _call(gateway: RunningGateway, token: str, method: str, path: str, body: Any = None) -> httpx.Response:
    with gateway.client() as client:
        return client.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})


def test_requests_decisions_and_refusals_are_announced_signed(
    hooked: tuple[RunningGateway, Receiver, dict[str, str]],
) -> None:
    gateway, receiver, tokens = hooked
    ask = {"role": "gated", "service": "payments", "reason": "INC-7 refunds"}
    first = _call(gateway, tokens["alice"], "POST", "/v1/access", ask)
    assert first.status_code == 201, first.text
    assert _call(gateway, tokens["bob"], "POST", f"/v1/access/{first.json()['id']}/approve", {}).status_code == 200
    second = _call(gateway, tokens["alice"], "POST", "/v1/access", ask)
    assert _call(gateway, tokens["bob"], "POST", f"/v1/access/{second.json()['id']}/deny", {}).status_code == 200
    assert _call(gateway, tokens["alice"], "GET", "/v1/users").status_code == 403
    assert _call(gateway, tokens["bob"], "GET", "/v1/sessions").status_code == 200  # not announced

    receiver.wait_for(6)
    time.sleep(0.5)  # and nothing more comes
    events = receiver.events()
    assert events[0]["event"] == "policy.apply" and events[0]["actor"] == "gateway"  # the policy put in force at start
    events = events[1:]
    assert [e["event"] for e in events] == [
        "access.request",
        "access.approve",
        "access.request",
        "access.deny",
        "access.denied",
    ]
    assert events[0]["actor"] == "user:alice" and events[0]["details"]["request"] == first.json()["id"]
    assert events[1]["details"]["granted"] is True
    assert (
        events[4]["details"]["route"] == "GET /v1/users" and "'users' admin ability" in events[4]["details"]["reason"]
    )
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)  # the audit log's own positions
    for header, body in receiver.received:
        assert _verifies(header, body)
        assert not _verifies(header, body, b"another-secret-of-some-length")
        assert not _verifies(header, body.replace(b'"seq"', b'"Seq"'))


def test_a_slow_receiver_holds_up_no_action(tmp_path: Path) -> None:
    receiver = Receiver(delay=2.0)
    assert init_state(tmp_path / "state", tmp_path / "init").returncode == 0
    (tmp_path / "policy.yaml").write_text(POLICY)
    (tmp_path / "secret").write_bytes(SECRET)
    extra = ("--webhook", receiver.url, "--webhook-secret-file", str(tmp_path / "secret"))
    gateway = start_gateway(tmp_path / "state", policy=tmp_path / "policy.yaml", extra=extra)
    try:
        token = _login(gateway, "admin", ADMIN_PASSWORD)
        started = time.monotonic()
        for _ in range(5):  # each refused (admin holds no role on payments): the first is announced
            answer = _call(gateway, token, "POST", "/v1/sessions", {"service": "payments", "reason": "x"})
            assert answer.status_code == 403
        assert time.monotonic() - started < 5  # the receiver alone takes 2 s per delivery
        receiver.wait_for(2, timeout=10)  # the policy put in force, and the first refusal
        time.sleep(2.5)
        assert [e["event"] for e in receiver.events()] == ["policy.apply", "access.denied"]  # a minute's refusals: one
    finally:
        gateway.stop()
        receiver.server.shutdown()
    assert "Traceback" not in gateway.log()


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["--webhook", "http://127.0.0.1:9/hook"], 2, "needs --webhook-secret-file"),
        (["--webhook", "ftp://example/hook", "--webhook-secret-file", "{secret}"], 1, "must be an https URL"),
        (["--webhook", "http://hooks.example/h", "--webhook-secret-file", "{secret}"], 1, "only for this machine"),
        (["--webhook", "https://u:p@hooks.example/h", "--webhook-secret-file", "{secret}"], 1, "user name or password"),
        (["--webhook", "http://127.0.0.1:9/hook", "--webhook-secret-file", "{short}"], 1, "too short"),
        (["--webhook", "http://127.0.0.1:9/hook", "--webhook-secret-file", "{missing}"], 1, "cannot read"),
        (["--webhook-secret-file", "{secret}"], 2, "go with --webhook URL"),
    ],
)
def test_a_bad_webhook_setting_is_one_line_at_start(tmp_path: Path, args: list[str], code: int, needle: str) -> None:
    assert init_state(tmp_path / "state", tmp_path / "init").returncode == 0
    (tmp_path / "secret").write_bytes(SECRET)
    (tmp_path / "short").write_bytes(b"short")
    files = {"secret": tmp_path / "secret", "short": tmp_path / "short", "missing": tmp_path / "missing"}
    args = [a.format(**files) for a in args]
    serve = ["gateway", "serve", "--data", str(tmp_path / "state"), "--listen", "127.0.0.1:0"]
    result = keyhole(*serve, "--agent-listen", "127.0.0.1:0", *args, config=tmp_path / "c", timeout=30)
    assert result.returncode == code, result.stderr
    assert needle in result.stderr and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
