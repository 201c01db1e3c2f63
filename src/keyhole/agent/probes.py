"""Probes as they run: what happens on the application's thread when a probed line or function is hit.

The order of work on every hit is the point of this module. First the cheap "drop" decisions
(disabled, expired, rate limiter) that read a few attributes and touch nothing else; then the
condition; then admission under a lock (rate, hit limit, process capture rate); only then capture,
into plain values. Encoding, redaction by value and writing happen on the agent's own thread.

Nothing here raises into the application: every entry point catches Exception and turns it into
an error event. (KeyboardInterrupt and SystemExit raised by the application's own signal handlers
are the application's and pass through.)
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any

from keyhole.agent import safe_access as sa
from keyhole.agent.capture import Capturer, NameFilter
from keyhole.agent.errors import EvalError, StepBudgetExceeded
from keyhole.agent.evaluator import CompiledExpression, Scope, compile_expression, is_finite_number
from keyhole.agent.formatting import MAX_MESSAGE, format_value
from keyhole.agent.frames import capture_stack, frame_locals
from keyhole.agent.metrics import MetricAggregate
from keyhole.agent.rate_limit import ByteBudget, RateLimiter
from keyhole.protocol import events as ev
from keyhole.protocol.durations import format_duration
from keyhole.protocol.expression import TemplateField
from keyhole.protocol.limits import EXPRESSION_ERRORS_BEFORE_DISABLE, LOG_BYTES_PER_SECOND, CaptureLimits
from keyhole.protocol.probe_spec import ProbeSpec
from keyhole.protocol.redaction import RedactionRules

if TYPE_CHECKING:
    from keyhole.agent.runtime import Runtime

_clock = time.perf_counter
_wall = time.time
_ident = threading.get_ident
MAX_OPEN_CALLS = 10_000


class Probe:
    """State and admission shared by every kind."""

    kind = ""
    captures = False  # counted against the process-wide capture rate

    def __init__(self, spec: ProbeSpec, runtime: Runtime) -> None:
        self.spec = spec
        self.id = spec.id
        self.runtime = runtime
        self.enabled = True
        self.installed = False
        self.expires = _clock() + spec.ttl
        self.limiter = RateLimiter(spec.rate) if spec.rate is not None else None
        self.max_hits = spec.max_hits
        self.admitted = 0
        self.hits = 0
        self.suppressed = 0
        self.errors = 0
        self.consecutive_errors = 0
        self.cost = 0.0  # seconds spent on application threads
        self.ship_cost = 0.0  # seconds spent on the agent's thread finishing this probe's events
        self._error_limiter = RateLimiter(1.0)
        self._suppressed_errors = 0
        self._lock = threading.Lock()
        self.names = NameFilter(runtime.rules, spec.reveal)
        self.limits: CaptureLimits = runtime.limits
        self.condition = self._compile(spec.checked_condition, runtime.rules)

    def _compile(self, checked: Any, rules: RedactionRules) -> CompiledExpression | None:
        return compile_expression(checked, rules, self.spec.reveal) if checked is not None else None

    # --- state ---
    def set_rules(self, rules: RedactionRules) -> None:
        self.names = NameFilter(rules, self.spec.reveal)

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        for limiter in (self.limiter, self._error_limiter):
            if limiter is not None:
                limiter.reset_after_fork()

    def disable(self, reason: str) -> None:
        with self._lock:
            if not self.enabled:
                return
            self.enabled = False
        self.runtime.probe_disabled(self, reason)

    def expire(self) -> None:
        self.disable(f"expired: its time to live ({_ttl(self.spec.ttl)}) ran out")

    def stats(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "emitted": self.admitted,
            "suppressed": self.suppressed,
            "errors": self.errors,
            "cpu_ms": round(self.cost * 1000, 3),
        }

    # --- the hit ---
    def _gate(self, now: float) -> bool:
        """The cheap checks, before anything is read from the application."""
        if not self.enabled:
            return False
        if now >= self.expires:
            self.expire()
            return False
        limiter = self.limiter
        if limiter is not None and now < limiter.allow_at:
            self.suppressed += 1
            return False
        return True

    def _condition(self, frame: FrameType) -> Scope | None:
        """Evaluate the condition; return the scope to reuse, or None when the hit does not count."""
        scope = Scope(frame)
        condition = self.condition
        if condition is not None:
            if not sa.truth(condition.evaluate(scope)):
                self.consecutive_errors = 0
                return None
            self.consecutive_errors = 0
        return scope

    def _admit(self, now: float) -> int:
        """0: dropped; 1: admitted; 2: admitted, and it was the last one the hit limit allows."""
        limiter = self.limiter
        if limiter is not None and not limiter.try_acquire(now):
            self.suppressed += 1
            return 0
        if self.captures and not self.runtime.capture_limiter.try_acquire(now):
            self.suppressed += 1
            return 0
        with self._lock:
            if not self.enabled:
                return 0
            self.admitted += 1
            if self.max_hits is not None and self.admitted >= self.max_hits:
                self.enabled = False
                return 2
        return 1

    def _after_emit(self, admitted: int) -> None:
        if admitted == 2:
            self.runtime.probe_disabled(self, f"hit limit reached ({self.max_hits} events)")

    def _failed(self, exc: Exception, now: float) -> None:
        if isinstance(exc, StepBudgetExceeded):
            self.disable(f"expression cost budget exceeded: {exc}")
            return
        if not isinstance(exc, EvalError):
            # A defect in keyhole, not in the user's expression: stop this probe and say so.
            self.disable(f"internal error in keyhole ({type(exc).__name__}: {exc}); the probe was stopped")
            return
        self.errors += 1
        self.consecutive_errors += 1
        if self.consecutive_errors >= EXPRESSION_ERRORS_BEFORE_DISABLE:
            self.disable(f"expression failed {self.consecutive_errors} times in a row; last error: {exc}")
            return
        if self._error_limiter.try_acquire(now):
            event = self._event(ev.ERROR)
            event["error"] = str(exc)
            if self._suppressed_errors:
                event["suppressed"] = self._suppressed_errors
                self._suppressed_errors = 0
            self.runtime.emit(event)
        else:
            self._suppressed_errors += 1

    def _event(self, kind: str) -> dict[str, Any]:
        return {"probe": self.id, "kind": kind, "ts": _wall(), "thread": _ident()}

    def _capturer(self) -> Capturer:
        return Capturer(self.names, self.limits)


def _ttl(seconds: float) -> str:
    return format_duration(seconds)


class LineProbe(Probe):
    def on_line(self, frame: FrameType) -> None:
        start = _clock()
        self.hits += 1
        try:
            if not self._gate(start):
                return
            scope = self._condition(frame)
            if scope is None:
                return
            self._on_admissible(frame, scope, start)
        except Exception as exc:
            self._failed(exc, start)
        finally:
            self.cost += _clock() - start

    def _on_admissible(self, frame: FrameType, scope: Scope, now: float) -> None:
        admitted = self._admit(now)
        if admitted:
            self.runtime.emit(self.build(frame, scope))
            self._after_emit(admitted)

    def build(self, frame: FrameType, scope: Scope) -> dict[str, Any]:
        raise NotImplementedError


class SnapshotProbe(LineProbe):
    kind = ev.SNAPSHOT
    captures = True

    def __init__(self, spec: ProbeSpec, runtime: Runtime) -> None:
        super().__init__(spec, runtime)
        self.watch = tuple(compile_expression(w, runtime.rules, spec.reveal) for w in spec.checked_watch)

    def build(self, frame: FrameType, scope: Scope) -> dict[str, Any]:
        capturer = self._capturer()
        event = self._event(ev.SNAPSHOT)
        event["frames"] = capture_stack(frame, capturer, self.limits.frames_with_locals, self.limits.frames)
        watch: dict[str, Any] = {}
        for expression in self.watch:
            try:
                watch[expression.source] = capturer.value(expression.evaluate(scope))
            except StepBudgetExceeded:
                raise
            except EvalError as exc:
                watch[expression.source] = {"@error": str(exc)}
        event["watch"] = watch
        return event


class LogProbe(LineProbe):
    kind = ev.LOG

    def __init__(self, spec: ProbeSpec, runtime: Runtime) -> None:
        super().__init__(spec, runtime)
        parts: list[str | tuple[CompiledExpression, str]] = []
        for part in spec.checked_template:
            if isinstance(part, TemplateField):
                parts.append((compile_expression(part.expression, runtime.rules, spec.reveal), part.format_spec))
            else:
                parts.append(part)
        self.parts = tuple(parts)
        self.bytes = ByteBudget(LOG_BYTES_PER_SECOND)

    def reset_after_fork(self) -> None:
        super().reset_after_fork()
        self.bytes.reset_after_fork()

    def _on_admissible(self, frame: FrameType, scope: Scope, now: float) -> None:
        admitted = self._admit(now)
        if not admitted:
            return
        message, error = self._format(scope)
        if not self.bytes.take(now, len(message)):
            self.suppressed += 1
            self._after_emit(admitted)
            return
        event = self._event(ev.LOG)
        event["message"] = message
        self.runtime.emit(event)
        self._after_emit(admitted)
        if error is not None:
            self._failed(error, now)
        else:
            self.consecutive_errors = 0

    def _format(self, scope: Scope) -> tuple[str, EvalError | None]:
        out: list[str] = []
        error: EvalError | None = None
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            expression, spec = part
            try:
                out.append(format_value(expression.evaluate(scope), spec, self.names))
            except StepBudgetExceeded:
                raise
            except EvalError as exc:
                error = exc
                out.append(f"<error: {exc}>")
        return "".join(out)[:MAX_MESSAGE], error


class MetricProbe(LineProbe):
    kind = ev.METRIC

    def __init__(self, spec: ProbeSpec, runtime: Runtime) -> None:
        super().__init__(spec, runtime)
        self.value = self._compile(spec.checked_value, runtime.rules)
        self.aggregate = MetricAggregate()
        self.started = _clock()

    def reset_after_fork(self) -> None:
        super().reset_after_fork()
        self.aggregate.reset_after_fork()
        self.started = _clock()

    def on_line(self, frame: FrameType) -> None:
        start = _clock()
        self.hits += 1
        try:
            if not self.enabled:
                return
            if start >= self.expires:
                self.expire()
                return
            if self.condition is None and self.value is None and self.max_hits is None:
                self.aggregate.hit()
                return
            scope = self._condition(frame)
            if scope is None:
                return
            if self.max_hits is not None:
                admitted = self._admit(start)
                if not admitted:
                    return
                if admitted == 2:
                    self._after_emit(admitted)
            if self.value is None:
                self.aggregate.hit()
                return
            value = self.value.evaluate(scope)
            if not is_finite_number(value):
                raise EvalError(f"metric value must be a finite number (got {sa.type_name(value)})")
            self.aggregate.add(float(value))
            self.consecutive_errors = 0
        except Exception as exc:
            self._failed(exc, start)
        finally:
            self.cost += _clock() - start

    def report(self, final: bool = False) -> dict[str, Any] | None:
        """The interval's aggregate as an event, or None when nothing was hit (except the final report)."""
        now = _clock()
        data = self.aggregate.take()
        if not data["count"] and not final:
            return None
        event = self._event(ev.METRIC)
        event.update(data)
        event["interval"] = round(now - self.started, 3)
        if final:
            event["final"] = True
        self.started = now
        return event


class FunctionProbe(Probe):
    """Arguments on entry; return value or exception, and duration, on exit."""

    kind = ev.FUNCTION
    captures = True

    def __init__(self, spec: ProbeSpec, runtime: Runtime) -> None:
        super().__init__(spec, runtime)
        self._calls: dict[int, tuple[int, float]] = {}
        self._counter = itertools.count(1)

    def reset_after_fork(self) -> None:
        super().reset_after_fork()
        self._calls = {}

    def on_enter(self, frame: FrameType) -> None:
        start = _clock()
        self.hits += 1
        try:
            if not self._gate(start):
                return
            scope = self._condition(frame)
            if scope is None:
                return
            admitted = self._admit(start)
            if not admitted:
                return
            call = next(self._counter)
            if len(self._calls) < MAX_OPEN_CALLS:
                self._calls[id(frame)] = (call, start)
            code = frame.f_code
            event = self._event(ev.FUNCTION)
            event["phase"] = "entry"
            event["call"] = call
            nargs = code.co_argcount + code.co_kwonlyargcount + bool(code.co_flags & 0x04) + bool(code.co_flags & 0x08)
            names = code.co_varnames[:nargs]
            local_vars = frame.f_locals
            event["args"] = self._capturer().fields(
                ((n, local_vars[n]) for n in names if n in local_vars), 0
            )
            self.runtime.emit(event)
            self._after_emit(admitted)
        except Exception as exc:
            self._failed(exc, start)
        finally:
            self.cost += _clock() - start

    def _exit(self, frame: FrameType, phase: str, key: str, value: Any) -> None:
        start = _clock()
        try:
            entry = self._calls.pop(id(frame), None)
            if entry is None:
                return
            call, began = entry
            event = self._event(ev.FUNCTION)
            event["phase"] = phase
            event["call"] = call
            event[key] = self._capturer().value(value)
            event["duration_ms"] = round((start - began) * 1000, 4)
            self.runtime.emit(event)
        except Exception as exc:
            self._failed(exc, start)
        finally:
            self.cost += _clock() - start

    def on_return(self, frame: FrameType, value: Any) -> None:
        if self._calls:
            self._exit(frame, "return", "return", value)

    def on_unwind(self, frame: FrameType, exc: BaseException) -> None:
        if self._calls:
            self._exit(frame, "exception", "exception", exc)


class ExceptionProbe(Probe):
    """When an exception of the given type leaves the function: every traceback frame with its locals."""

    kind = ev.EXCEPTION
    captures = True

    def __init__(self, spec: ProbeSpec, runtime: Runtime) -> None:
        super().__init__(spec, runtime)
        self.exception = spec.exception or "Exception"

    def matches(self, exc: BaseException) -> bool:
        wanted = self.exception
        for klass in sa.mro(type(exc)):
            if sa.class_name(klass) == wanted or sa.qualified_name(klass) == wanted:
                return True
        return False

    def on_unwind(self, frame: FrameType, exc: BaseException) -> None:
        start = _clock()
        self.hits += 1
        try:
            if not self._gate(start) or not self.matches(exc):
                return
            scope = self._condition(frame)
            if scope is None:
                return
            admitted = self._admit(start)
            if not admitted:
                return
            capturer = self._capturer()
            event = self._event(ev.EXCEPTION)
            event["exception"] = capturer.value(exc)
            frames: list[dict[str, Any]] = []
            tb = exc.__traceback__
            chain: list[tuple[FrameType, int]] = []
            while tb is not None:
                chain.append((tb.tb_frame, tb.tb_lineno))
                tb = tb.tb_next
            for tb_frame, lineno in reversed(chain[-self.limits.frames :]):
                code = tb_frame.f_code
                frames.append({
                    "file": code.co_filename,
                    "line": lineno,
                    "function": code.co_qualname,
                    "locals": frame_locals(tb_frame, capturer),
                })
            chain.clear()
            event["frames"] = frames
            self.runtime.emit(event)
            self._after_emit(admitted)
        except Exception as error:
            self._failed(error, start)
        finally:
            self.cost += _clock() - start


class StacksProbe(Probe):
    """Every thread's stack and every asyncio task's await chain, taken by the agent's thread on a schedule."""

    kind = ev.STACKS

    def __init__(self, spec: ProbeSpec, runtime: Runtime) -> None:
        super().__init__(spec, runtime)
        self.next_at: float | None = _clock() + (spec.after or 0.0)


PROBE_CLASSES: dict[str, Callable[[ProbeSpec, Runtime], Probe]] = {
    ev.SNAPSHOT: SnapshotProbe,
    ev.LOG: LogProbe,
    ev.METRIC: MetricProbe,
    ev.FUNCTION: FunctionProbe,
    ev.EXCEPTION: ExceptionProbe,
    ev.STACKS: StacksProbe,
}


def make_probe(spec: ProbeSpec, runtime: Runtime) -> Probe:
    return PROBE_CLASSES[spec.kind](spec, runtime)
