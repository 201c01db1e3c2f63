"""How an agent reaches its gateway: from `keyhole.start(...)` arguments or the environment
(KEYHOLE_GATEWAY, KEYHOLE_SERVICE, KEYHOLE_ENROLL_TOKEN, KEYHOLE_CA, KEYHOLE_LABELS)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from keyhole.agent.errors import AgentError
from keyhole.protocol.errors import SpecError
from keyhole.protocol.link import MAX_POLL_WAIT, check_labels, check_service

ENV_GATEWAY = "KEYHOLE_GATEWAY"
ENV_SERVICE = "KEYHOLE_SERVICE"
ENV_TOKEN = "KEYHOLE_ENROLL_TOKEN"
ENV_CA = "KEYHOLE_CA"
ENV_LABELS = "KEYHOLE_LABELS"
DEADMAN_GRACE = 60.0


class LinkConfigError(AgentError):
    """The agent cannot start its gateway link as configured; the message names the setting."""


@dataclass(frozen=True)
class LinkConfig:
    host: str
    port: int
    service: str
    token: str
    ca_pem: str
    labels: dict[str, str] = field(default_factory=dict)
    deadman_grace: float = DEADMAN_GRACE

    @property
    def poll_wait(self) -> float:
        """Long enough to be cheap, short enough that each answer refreshes the dead-man clock in time."""
        return max(1.0, min(MAX_POLL_WAIT - 5.0, self.deadman_grace / 3))


def _ca_pem(value: str) -> str:
    if value.lstrip().startswith("-----BEGIN CERTIFICATE-----"):
        return value
    try:
        with open(value, encoding="ascii") as handle:
            text = handle.read(1_000_000)
    except (OSError, UnicodeDecodeError) as exc:
        raise LinkConfigError(f"cannot read the gateway CA certificate {value!r}: {exc}") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise LinkConfigError(f"{value!r} is not a PEM certificate; use the gateway's ca.pem")
    return text


def _labels(text: str) -> dict[str, str]:
    labels = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise LinkConfigError(f"{ENV_LABELS} must be KEY=VALUE pairs separated by commas (got {item!r})")
        labels[key.strip()] = value.strip()
    return labels


def build_config(
    gateway: str | None = None,
    *,
    service: str | None = None,
    token: str | None = None,
    ca: str | None = None,
    labels: Mapping[str, str] | None = None,
    deadman_grace: float = DEADMAN_GRACE,
    environ: Mapping[str, str] | None = None,
) -> LinkConfig:
    env = os.environ if environ is None else environ
    gateway = gateway or env.get(ENV_GATEWAY)
    service = service or env.get(ENV_SERVICE)
    token = (token or env.get(ENV_TOKEN) or "").strip()
    ca = ca or env.get(ENV_CA)
    if not gateway:
        raise LinkConfigError(f"no gateway: pass gateway= or set {ENV_GATEWAY}=https://HOST:PORT")
    url = urlsplit(gateway)
    if url.scheme != "https" or not url.hostname:
        raise LinkConfigError(f"the gateway must be an https:// URL such as https://gateway:8443 (got {gateway!r})")
    try:
        port = url.port if url.port is not None else 443
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise LinkConfigError(f"the gateway URL has a bad port (got {gateway!r})")
    if not service:
        raise LinkConfigError(f"no service name: pass service= or set {ENV_SERVICE}")
    if not token:
        raise LinkConfigError(
            f"no enrollment token: set {ENV_TOKEN} (an admin makes one with keyhole agent enroll-token)"
        )
    if not ca:
        raise LinkConfigError(f"no gateway CA: set {ENV_CA} to the gateway's ca.pem")
    if not 3.0 <= deadman_grace <= 3600.0:
        raise LinkConfigError(f"deadman_grace must be from 3 to 3600 seconds (got {deadman_grace!r})")
    merged = dict(_labels(env.get(ENV_LABELS, ""))) if labels is None else dict(labels)
    try:
        check_service(service)
        checked = check_labels(merged)
    except SpecError as exc:
        raise LinkConfigError(str(exc)) from None
    return LinkConfig(url.hostname, port, service, token, _ca_pem(ca), checked, float(deadman_grace))
