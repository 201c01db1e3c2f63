"""Probes on a line (snapshot, log, metric): what a hit does before the kind makes its event."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import FrameType

from keyhole.agent.probes.base import Probe
from keyhole.agent.reading import safe_operations
from keyhole.agent.reading.scope import Scope

_clock = time.perf_counter
_getframe = sys._getframe
_truth = safe_operations.truth


class LineProbe(Probe):
    # A C callable that counts a hit when the probe needs nothing else (plain hit-count metrics).
    counter: Callable[[], object] | None = None

    def on_line(self) -> None:
        now = _clock()
        if now < self.limiter.allow_at:  # rate limited, or disabled
            self.suppressed += 1
            return
        next(self._hits)
        try:
            frame = _getframe(2)  # the application's frame: see LineSite
            scope = None
            condition = self.condition
            if condition is not None:
                scope = Scope(frame)
                if not _truth(condition.evaluate(scope)):
                    self.consecutive_errors = 0
                    return
                self.consecutive_errors = 0
            admitted = self._admit(now)
            if admitted:
                self.emit(frame, scope, now, admitted)
        except Exception as exc:
            if self._failed(exc, now):
                raise
        finally:
            self.cost += _clock() - now

    def emit(self, frame: FrameType, scope: Scope | None, now: float, admitted: int) -> None:
        """Make the event. `scope` is the condition's, or None when there was no condition."""
        raise NotImplementedError
