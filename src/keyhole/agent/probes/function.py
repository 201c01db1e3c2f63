"""Function probes: the arguments on entry; the return value or exception, and the duration, on exit."""

from __future__ import annotations

import time
from types import FrameType
from typing import Any

from keyhole.agent.probes.base import Probe, Runtime
from keyhole.agent.reading import safe_operations
from keyhole.agent.reading.scope import Scope
from keyhole.protocol import events as ev
from keyhole.protocol.probe_spec import ProbeSpec

_clock = time.perf_counter
_truth = safe_operations.truth
MAX_OPEN_CALLS = 10_000


class FunctionProbe(Probe):
    """Arguments on entry; return value or exception, and duration, on exit."""

    kind = ev.FUNCTION
    captures = True

    def __init__(self, spec: ProbeSpec, runtime: Runtime) -> None:
        super().__init__(spec, runtime)
        # id(frame) -> (call number, start time, code): the code guards against a reused frame address
        self._calls: dict[int, tuple[int, float, Any]] = {}

    @property
    def open_calls(self) -> int:
        return len(self._calls)

    def reset_after_fork(self) -> None:
        super().reset_after_fork()
        self._calls = {}

    def on_enter(self, frame: FrameType) -> None:
        now = _clock()
        if now < self.limiter.allow_at:  # rate limited, or disabled
            self.suppressed += 1
            return
        next(self._hits)
        try:
            local_vars = None
            condition = self.condition
            if condition is not None:
                scope = Scope(frame)
                local_vars = scope.locals
                if not _truth(condition.evaluate(scope)):
                    self.consecutive_errors = 0
                    return
                self.consecutive_errors = 0
            admitted = self._admit(now)
            if not admitted:
                return
            call = abs(admitted)
            code = frame.f_code
            if len(self._calls) < MAX_OPEN_CALLS:
                self._calls[id(frame)] = (call, now, code)
            flags = code.co_flags
            nargs = code.co_argcount + code.co_kwonlyargcount + bool(flags & 0x04) + bool(flags & 0x08)
            if local_vars is None:
                local_vars = frame.f_locals
            event = self._event(ev.FUNCTION, now)
            event["phase"] = "entry"
            event["call"] = call
            event["args"] = self._capturer().fields(
                ((n, local_vars[n]) for n in code.co_varnames[:nargs] if n in local_vars), 0, identifiers=True
            )
            self.runtime.emit(event)
            self._after_emit(admitted)
        except Exception as exc:
            if self._failed(exc, now):
                raise
        finally:
            self.cost += _clock() - now

    def _exit(self, frame: FrameType, phase: str, value: Any) -> None:
        entry = self._calls.pop(id(frame), None)
        if entry is None or entry[2] is not frame.f_code:
            return
        now = _clock()
        try:
            call, began, _ = entry
            event = self._event(ev.FUNCTION, now)
            event["phase"] = phase
            event["call"] = call
            event[phase] = self._capturer().value(value)
            event["duration_ms"] = round((now - began) * 1000, 4)
            self.runtime.emit(event)
        except Exception as exc:
            if self._failed(exc, now):
                raise
        finally:
            self.cost += _clock() - now

    def on_return(self, frame: FrameType, value: Any) -> None:
        if self._calls:
            self._exit(frame, "return", value)

    def on_unwind(self, frame: FrameType, exc: BaseException) -> None:
        if self._calls:
            self._exit(frame, "exception", exc)
