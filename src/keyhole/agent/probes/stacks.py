"""Stacks probes: every thread's stack and asyncio task, taken by the agent's thread on a schedule."""

from __future__ import annotations

import time

from keyhole.agent.probes.base import Probe, Runtime
from keyhole.protocol import events as ev
from keyhole.protocol.probe_spec import ProbeSpec

_clock = time.perf_counter


class StacksProbe(Probe):
    """Every thread's stack and every asyncio task's await chain, taken by the agent's thread on a schedule."""

    kind = ev.STACKS

    def __init__(self, spec: ProbeSpec, runtime: Runtime) -> None:
        super().__init__(spec, runtime)
        self.next_at: float | None = _clock() + (spec.after or 0.0)

    def taken(self) -> None:
        next(self._admitted)
        next(self._hits)
