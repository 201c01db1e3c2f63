"""keyhole: secure debugging of live Python services.

This top-level package stays import-light: the agent runs inside customer processes and must not
pull in the CLI's or the gateway's dependencies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keyhole.version import __version__

if TYPE_CHECKING:
    from keyhole.agent.core.agent import Agent


def start(gateway: str | None = None, **settings: Any) -> Agent:
    """Start an agent in this process, linked to a gateway. See keyhole.agent.link.start.start."""
    from keyhole.agent.link.start import start as start_agent

    return start_agent(gateway, **settings)


__all__ = ["__version__", "start"]
