"""Exception probes: every traceback frame with its locals when an exception of a type leaves a function."""

from __future__ import annotations

import time
from types import FrameType
from typing import Any

from keyhole.agent.probes.base import Probe, Runtime
from keyhole.agent.reading import safe_operations, safe_types
from keyhole.agent.reading.frames import frame_locals
from keyhole.agent.reading.scope import Scope
from keyhole.protocol import events as ev
from keyhole.protocol.probe_spec import ProbeSpec

_clock = time.perf_counter
_truth = safe_operations.truth
_traceback_of = BaseException.__dict__["__traceback__"].__get__


class ExceptionProbe(Probe):
    """When an exception of the given type leaves the function: every traceback frame with its locals."""

    kind = ev.EXCEPTION
    captures = True

    def __init__(self, spec: ProbeSpec, runtime: Runtime) -> None:
        super().__init__(spec, runtime)
        self.exception = spec.exception or "Exception"

    def matches(self, exc: BaseException) -> bool:
        wanted = self.exception
        return any(
            safe_types.class_name(k) == wanted or safe_types.qualified_name(k) == wanted
            for k in safe_types.mro(type(exc))
        )

    def on_unwind(self, frame: FrameType, exc: BaseException) -> None:
        now = _clock()
        if now < self.limiter.allow_at:  # rate limited, or disabled
            self.suppressed += 1
            return
        next(self._hits)
        try:
            if not self.matches(exc):
                return
            condition = self.condition
            if condition is not None and not _truth(condition.evaluate(Scope(frame))):
                return
            admitted = self._admit(now)
            if not admitted:
                return
            capturer = self._capturer()
            event = self._event(ev.EXCEPTION, now)
            event["exception"] = capturer.value(exc)
            chain: list[tuple[FrameType, int]] = []
            tb = _traceback_of(exc)  # exc.__traceback__ without the exception class's attribute hooks
            while tb is not None:
                chain.append((tb.tb_frame, tb.tb_lineno))
                tb = tb.tb_next
            frames: list[tuple[Any, ...]] = []
            for tb_frame, lineno in reversed(chain[-self.limits.frames :]):
                code = tb_frame.f_code
                frames.append((code.co_filename, lineno, code.co_qualname, frame_locals(tb_frame, capturer)))
            chain.clear()
            event["frames"] = frames
            self.runtime.emit(event)
            self._after_emit(admitted)
        except Exception as error:
            if self._failed(error, now):
                raise
        finally:
            self.cost += _clock() - now
