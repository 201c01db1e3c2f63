"""What a running probe needs from its agent: where events go, the shared limits, how to be disabled."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from keyhole.agent.probes.rate_limit import RateLimiter
from keyhole.protocol.limits import CaptureLimits
from keyhole.protocol.redaction import RedactionRules

if TYPE_CHECKING:
    from keyhole.agent.probes.kinds import Probe


class Runtime(Protocol):
    rules: RedactionRules
    limits: CaptureLimits
    capture_limiter: RateLimiter
    hit_overhead: float

    def emit(self, event: dict[str, Any]) -> None:
        """Queue an event for the agent's thread; never blocks."""

    def probe_disabled(self, probe: Probe, reason: str) -> None:
        """Report that a probe stopped, and have its instrumentation removed."""
