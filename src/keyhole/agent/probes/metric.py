"""Metric probes: a count of hits, or a summary of a value, reported every interval."""

from __future__ import annotations

import itertools
import sys
import time
from typing import Any

from keyhole.agent.errors import EvalError
from keyhole.agent.probes.base import Runtime, _on_agent_thread, counter_value
from keyhole.agent.probes.line import LineProbe
from keyhole.agent.probes.metric_aggregate import MetricAggregate
from keyhole.agent.reading import safe_operations, safe_types
from keyhole.agent.reading.evaluator import as_metric_value
from keyhole.agent.reading.scope import Scope
from keyhole.protocol import events as ev
from keyhole.protocol.probe_spec import ProbeSpec
from keyhole.protocol.redaction import RedactionRules

_clock = time.perf_counter
_getframe = sys._getframe
_truth = safe_operations.truth


class MetricProbe(LineProbe):
    kind = ev.METRIC

    def __init__(self, spec: ProbeSpec, runtime: Runtime) -> None:
        super().__init__(spec, runtime)
        self.aggregate = MetricAggregate()
        self.started = _clock()
        self._passed = itertools.count()  # hits that met the condition (no value to summarise)
        self._reported_count = 0
        # A plain hit counter needs nothing from the frame: the hit is the count.
        self.counter_only = self.condition is None and self.value is None and self.max_hits is None
        if self.counter_only:
            self.counter = self._hits.__next__

    def set_rules(self, rules: RedactionRules) -> None:
        super().set_rules(rules)
        self.value = self._compile(self.spec.checked_value, rules)

    def reset_after_fork(self) -> None:
        super().reset_after_fork()
        self.aggregate.reset_after_fork()
        self.started = _clock()
        self._reported_count = self._count()

    def _count(self) -> int:
        return counter_value(self._hits if self.counter_only else self._passed)

    def on_line(self) -> None:
        now = _clock()
        if now < self.limiter.allow_at:  # disabled
            self.suppressed += 1
            return
        next(self._hits)
        if _on_agent_thread():
            return
        try:
            scope = Scope(_getframe(2)) if self.condition is not None or self.value is not None else None
            if self.condition is not None and not _truth(self.condition.evaluate(scope)):  # type: ignore[arg-type]
                self.consecutive_errors = 0
                return
            admitted = self._admit(now) if self.max_hits is not None else 1
            if not admitted:
                return
            if self.value is None:
                next(self._passed)
            else:
                value = self.value.evaluate(scope)  # type: ignore[arg-type]
                number = as_metric_value(value)
                if number is None:
                    raise EvalError(f"metric value must be a finite number (got {safe_types.type_name(value)})")
                self.aggregate.add(number)
            self.consecutive_errors = 0
            self._after_emit(admitted)
        except Exception as exc:
            if self._failed(exc, now):
                raise
        finally:
            self.cost += _clock() - now

    def report(self, final: bool = False) -> dict[str, Any] | None:
        """The interval's aggregate as an event, or None when nothing was hit (except the final report)."""
        now = _clock()
        if self.value is not None:
            data = self.aggregate.take()
        else:
            total = self._count()
            data = {"count": total - self._reported_count}
            self._reported_count = total
        if not data["count"] and not final:
            return None
        event = self._event(ev.METRIC, now)
        event.update(data)
        event["interval"] = round(now - self.started, 3)
        if final:
            event["final"] = True
        self.started = now
        return event
