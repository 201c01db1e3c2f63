"""Snapshot probes: the stack with each frame's locals, and the watch expressions, at a line."""

from __future__ import annotations

from types import FrameType
from typing import Any

from keyhole.agent.errors import EvalError, StepBudgetExceeded
from keyhole.agent.probes.line import LineProbe
from keyhole.agent.reading.evaluator import compile_expression
from keyhole.agent.reading.frames import capture_stack
from keyhole.agent.reading.scope import Scope
from keyhole.protocol import events as ev
from keyhole.protocol.redaction import RedactionRules


class SnapshotProbe(LineProbe):
    kind = ev.SNAPSHOT
    captures = True

    def set_rules(self, rules: RedactionRules) -> None:
        super().set_rules(rules)
        self.watch = tuple(compile_expression(w, rules, self.spec.reveal) for w in self.spec.checked_watch)

    def emit(self, frame: FrameType, scope: Scope | None, now: float, admitted: int) -> None:
        if scope is None:
            scope = Scope(frame)
        capturer = self._capturer()
        event = self._event(ev.SNAPSHOT, now)
        event["frames"] = capture_stack(
            frame, capturer, self.limits.frames_with_locals, self.limits.frames, scope.locals
        )
        watch: dict[str, Any] = {}
        for expression in self.watch:
            try:
                watch[expression.source] = capturer.value(expression.evaluate(scope))
            except StepBudgetExceeded:
                raise
            except EvalError as exc:
                watch[expression.source] = {"@error": str(exc)}
        event["watch"] = watch
        self.runtime.emit(event)
        self._after_emit(admitted)
