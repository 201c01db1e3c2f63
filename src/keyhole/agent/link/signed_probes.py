"""Checking a probe command from the gateway before anything of it runs: the gateway's signature
first, then every field it binds (probe id, service, instance, session, expiry), then the probe spec
itself with the agent's own validator and redaction rules."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
import time
from typing import Any

from keyhole.agent.errors import AgentError
from keyhole.agent.link import ed25519
from keyhole.protocol.errors import SpecError
from keyhole.protocol.link import ProbeCommand
from keyhole.protocol.probe_spec import ProbeSpec
from keyhole.protocol.redaction import RedactionRules

_SESSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class CommandRefused(AgentError):
    """A probe command the agent will not run; the message says why."""


@dataclasses.dataclass(frozen=True)
class AcceptedProbe:
    spec: ProbeSpec
    session: str
    expires: float


def check_command(
    envelope: Any,
    *,
    signing_key: bytes,
    service: str,
    instance: str,
    rules: RedactionRules,
    now: float | None = None,
) -> AcceptedProbe | None:
    """The probe to install, None if the command is aimed at another instance, or CommandRefused."""
    if not isinstance(envelope, dict) or not all(isinstance(envelope.get(k), str) for k in ("id", "payload", "sig")):
        raise CommandRefused("malformed probe command")
    try:
        payload = envelope["payload"].encode()
    except UnicodeEncodeError:
        raise CommandRefused("probe command payload is not valid text") from None
    try:
        signature = base64.b64decode(envelope["sig"], validate=True)
    except (binascii.Error, ValueError):
        raise CommandRefused("probe command signature is not base64") from None
    if not ed25519.verify(signing_key, payload, signature):
        raise CommandRefused("probe command signature does not verify against the gateway's key")
    try:
        command = ProbeCommand.parse(payload)
    except SpecError as exc:
        raise CommandRefused(str(exc)) from None
    if command.probe.get("id") != envelope["id"]:
        raise CommandRefused("probe command names another probe id than its envelope")
    if command.service != service:
        raise CommandRefused(f"probe command is for service {command.service!r}, this agent serves {service!r}")
    if command.instance is not None and command.instance != instance:
        return None
    if not _SESSION.fullmatch(command.session):
        raise CommandRefused("probe command carries no valid session id")
    remaining = command.expires - (time.time() if now is None else now)
    if remaining <= 0:
        raise CommandRefused("probe command has expired (its session or its own time is up)")
    try:
        spec = ProbeSpec.from_dict(command.probe, rules)
    except SpecError as exc:
        raise CommandRefused(str(exc)) from None
    return AcceptedProbe(dataclasses.replace(spec, ttl=min(spec.ttl, remaining)), command.session, command.expires)
