"""The optional webhook: a JSON POST, signed with HMAC-SHA256, for each new access request, approval,
denial and security alert, sent after the action's transaction commits (a refused action announces
nothing). Delivery runs on a thread of its own with a bounded queue: a slow or dead receiver never
holds up an action, and what cannot be delivered after three tries is logged, not retried forever.

The receiver checks `X-Keyhole-Signature: t=UNIX,v1=HEX`, where HEX is
HMAC-SHA256(secret, f"{t}.{body}"), and should refuse a `t` far from its own clock (a replay).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import ssl
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from keyhole.gateway.errors import GatewayError
from keyhole.protocol.events import format_timestamp

_log = logging.getLogger("keyhole.gateway")

# New requests and their decisions, and what a security team wants to hear about at once.
ANNOUNCED = frozenset(
    {
        "access.request",
        "access.approve",
        "access.deny",
        "access.revoke",
        "access.denied",  # a refusal: someone tried what their roles do not allow
        "login.revoked",  # a refresh token used twice: it was copied
        "agent.revoke",
        "policy.apply",
    }
)
REFUSED = "access.denied"
REFUSALS_EVERY = 60.0
SIGNATURE_HEADER = "X-Keyhole-Signature"
QUEUE_SIZE = 1000
TRIES = 3
TIMEOUT = 5.0
MIN_SECRET = 16


def read_secret(path: Path) -> bytes:
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise GatewayError(f"cannot read the webhook secret {path}: {exc.strerror or exc}") from None
    if len(secret) < MIN_SECRET:
        raise GatewayError(
            f"the webhook secret in {path} is too short ({len(secret)} bytes); use at least {MIN_SECRET}, "
            "e.g. openssl rand -hex 32 > FILE"
        )
    return secret


def check_url(url: str) -> str:
    """An https URL, or http to this machine only (what it carries names people and what they did)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        parts = urlsplit("")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise GatewayError("--webhook must be an https URL such as https://hooks.example/keyhole")
    if parts.username is not None or parts.password is not None:
        raise GatewayError("--webhook must not carry a user name or password; the signature authenticates it")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "::1", "localhost"):
        raise GatewayError("--webhook over plain http is only for this machine (127.0.0.1); use https")
    return url


def _where(url: str) -> str:
    """The URL as it may be logged: a path can hold the receiver's own secret."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class Webhook:
    def __init__(self, url: str, secret: bytes, ca: Path | None = None) -> None:
        self.url = check_url(url)
        self._secret = secret
        self._verify: ssl.SSLContext | bool = True
        if ca is not None:
            try:
                self._verify = ssl.create_default_context(cafile=str(ca))
            except (OSError, ssl.SSLError) as exc:
                raise GatewayError(f"cannot read the webhook CA {ca}: {exc}") from None
        self._queue: queue.Queue[bytes | None] = queue.Queue(QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self._alerted: set[str] = set()
        self._lock = threading.Lock()
        self._refused: dict[str, tuple[float, int]] = {}  # actor -> (last announced, not announced since)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._deliver_all, name="keyhole-webhook", daemon=True)
        self._thread.start()

    def stop(self, wait: float = TIMEOUT) -> None:
        """Deliver what is queued (for up to `wait` seconds), then end the thread."""
        if self._thread is None:
            return
        try:
            self._queue.put(None, timeout=wait)
        except queue.Full:
            pass
        self._thread.join(wait)
        self._thread = None

    def announce(self, appended: list[tuple[str, bytes]]) -> None:
        """Called with a committed transaction's audit entries (action, canonical body)."""
        for action, body in appended:
            if action in ANNOUNCED:
                entry = json.loads(body)
                if action == REFUSED:
                    held = self._refusals_to_hold(str(entry.get("actor")))
                    if held is None:
                        continue
                    entry["refusals_not_announced"] = held
                self._put({"event": action, **entry})

    def _refusals_to_hold(self, actor: str) -> int | None:
        """A user's refusals are announced at most once a minute, the next one saying how many were not:
        a loop of refused calls must not fill the queue and crowd out the alerts behind it."""
        with self._lock:
            now = time.monotonic()
            last, held = self._refused.get(actor, (-REFUSALS_EVERY, 0))
            if now - last < REFUSALS_EVERY:
                self._refused[actor] = (last, held + 1)
                return None
            self._refused[actor] = (now, 0)
            if len(self._refused) > 10_000:
                self._refused = {a: v for a, v in self._refused.items() if now - v[0] < REFUSALS_EVERY}
            return held

    def alert(self, event: str, message: str) -> None:
        """A security alert that is not an audit entry (the log was rewritten); once per run."""
        if event not in self._alerted:
            self._alerted.add(event)
            self._put({"event": event, "at": format_timestamp(time.time()), "message": message})

    def _put(self, payload: dict[str, object]) -> None:
        try:
            self._queue.put_nowait(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
        except queue.Full:
            _log.error("webhook queue full (%d): %s not sent", QUEUE_SIZE, payload.get("event"))

    def _deliver_all(self) -> None:
        # No redirects (the URL is the one configured) and no proxies from the environment: rule 6.
        with httpx.Client(timeout=TIMEOUT, follow_redirects=False, trust_env=False, verify=self._verify) as client:
            while (body := self._queue.get()) is not None:
                try:
                    self._deliver(client, body)
                except Exception as exc:
                    _log.error("webhook %s: %s delivering %s", _where(self.url), type(exc).__name__, _event(body))

    def _deliver(self, client: httpx.Client, body: bytes) -> None:
        problem = ""
        for attempt in range(TRIES):
            if attempt:
                time.sleep(2.0**attempt)
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature(self._secret, int(time.time()), body),
            }
            try:
                answer = client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
                continue
            if answer.is_success:
                return
            problem = f"HTTP {answer.status_code}"
        _log.error(
            "webhook %s: could not deliver %s after %d tries (%s)", _where(self.url), _event(body), TRIES, problem
        )


def _event(body: bytes) -> str:
    try:
        return str(json.loads(body).get("event"))
    except ValueError:
        return "?"
