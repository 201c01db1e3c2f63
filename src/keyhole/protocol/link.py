"""The agent link's wire: what an agent and the gateway exchange besides events.

- Enrollment (user API listener, no client certificate yet): the agent sends its enrollment token,
  the ed25519 public key it generated and a proof that it holds the private key; it gets a client
  certificate, the agent listener's port and the gateway's probe-signing public key.
- From then on, mutual TLS on the agent listener: hello, long-poll for the probe set, event
  uploads, certificate renewal.
- A probe command is a signed envelope: ``{"payload": <canonical JSON text>, "sig": <base64>}``.
  The payload names the probe spec, the session, the service (and optionally one instance) and
  the absolute expiry; the signature is the gateway's ed25519 signature over the payload's UTF-8
  bytes. The agent verifies the signature, then every field, and refuses anything else.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from keyhole.protocol.errors import SpecError

ENVELOPE_VERSION = 1
ENROLL_PATH = "/v1/agent/enroll"
HELLO_PATH = "/v1/agent/hello"
PROBES_PATH = "/v1/agent/probes"
EVENTS_PATH = "/v1/agent/events"
RENEW_PATH = "/v1/agent/renew"
ENROLL_TOKEN_PREFIX = "khe_"
# The longest a probe poll is held open: short enough that proxies and NATs keep the connection.
MAX_POLL_WAIT = 25.0
MAX_BATCH_EVENTS = 500
MAX_BATCH_BYTES = 4 * 1024 * 1024
SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
LABEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}")
MAX_LABEL_VALUE = 128


def canonical(value: Any) -> bytes:
    """One byte string per value, so that a signature or digest does not depend on key order."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def enroll_proof_message(token: str, public_key: bytes) -> bytes:
    """What the agent signs with its new key at enrollment: binds the key to this one token."""
    return b"keyhole-enroll-v1\n" + hashlib.sha256(token.encode()).digest() + public_key


def renew_proof_message(credential: str, public_key: bytes) -> bytes:
    return b"keyhole-renew-v1\n" + credential.encode() + b"\n" + public_key


def check_service(value: object) -> str:
    if not isinstance(value, str) or not SERVICE_NAME.fullmatch(value):
        raise SpecError(
            "service name must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit "
            f"(got {value!r})"
        )
    return value


def check_labels(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > 32:
        raise SpecError("labels must be an object of at most 32 key=value pairs")
    for key, item in value.items():
        if not isinstance(key, str) or not LABEL_KEY.fullmatch(key):
            raise SpecError(f"label name {key!r} must be 1-63 letters, digits, '.', '_', '/' or '-'")
        if not isinstance(item, str) or len(item) > MAX_LABEL_VALUE or "\n" in item:
            raise SpecError(f"label {key!r} must have a one-line text value of at most {MAX_LABEL_VALUE} characters")
    return dict(value)


@dataclass(frozen=True)
class ProbeCommand:
    """The signed payload of one probe command, after its fields were checked."""

    probe: dict[str, Any]
    session: str
    service: str
    expires: float
    instance: str | None = None

    def payload(self) -> bytes:
        data: dict[str, Any] = {
            "v": ENVELOPE_VERSION,
            "probe": self.probe,
            "session": self.session,
            "service": self.service,
            "expires": self.expires,
        }
        if self.instance is not None:
            data["instance"] = self.instance
        return canonical(data)

    @classmethod
    def parse(cls, payload: bytes) -> ProbeCommand:
        try:
            data = json.loads(payload)
        except ValueError:
            raise SpecError("probe command payload is not JSON") from None
        if not isinstance(data, dict) or type(data.get("v")) is not int or data["v"] != ENVELOPE_VERSION:
            raise SpecError(f"probe command is not version {ENVELOPE_VERSION}")
        probe, session, service, expires = (data.get(k) for k in ("probe", "session", "service", "expires"))
        instance = data.get("instance")
        if (
            not isinstance(probe, dict)
            or not isinstance(session, str)
            or not isinstance(service, str)
            or isinstance(expires, bool)
            or not isinstance(expires, int | float)
            or not math.isfinite(expires)
            or not (instance is None or isinstance(instance, str))
        ):
            raise SpecError("probe command is missing its probe, session, service or expiry")
        return cls(probe, session, service, float(expires), instance)


def probe_set_digest(envelopes: list[dict[str, str]]) -> str:
    """Names one probe set, so a poll can say which set the agent already holds."""
    digest = hashlib.sha256()
    for envelope in envelopes:
        digest.update(envelope["sig"].encode() + b"\n")
    return digest.hexdigest()[:32]
