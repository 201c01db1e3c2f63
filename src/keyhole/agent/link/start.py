"""`keyhole.start(...)`: an agent linked to a gateway, from arguments or the environment."""

from __future__ import annotations

from collections.abc import Mapping

from keyhole.agent.core.agent import Agent
from keyhole.agent.link.config import DEADMAN_GRACE, build_config
from keyhole.agent.link.gateway_link import GatewayLink
from keyhole.protocol.redaction import RedactionRules


def start(
    gateway: str | None = None,
    *,
    service: str | None = None,
    token: str | None = None,
    ca: str | None = None,
    labels: Mapping[str, str] | None = None,
    deadman_grace: float = DEADMAN_GRACE,
    rules: RedactionRules | None = None,
) -> Agent:
    """Start this process's agent and its link to the gateway; returns at once (enrollment and the
    connection happen on the link's own thread). Settings left out come from KEYHOLE_GATEWAY,
    KEYHOLE_SERVICE, KEYHOLE_ENROLL_TOKEN, KEYHOLE_CA and KEYHOLE_LABELS. Raises AgentError (with
    the setting to fix) when something is missing or malformed."""
    config = build_config(gateway, service=service, token=token, ca=ca, labels=labels, deadman_grace=deadman_grace)
    link = GatewayLink(config)
    agent = Agent(link, service=config.service, rules=rules)
    link.attach(agent)
    agent.start()
    link.start()
    return agent
