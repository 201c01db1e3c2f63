"""Probes as they run: what happens on the application's thread when a probed line or function is hit.

The order of work on every hit is the point of this module. First the "drop" decision, which reads
a few attributes and one clock and touches nothing else (disabled? rate limiter says not yet?); then
the condition; then admission (expiry, rate, hit limit, process capture rate); only then capture,
into plain values. Encoding, redaction by value and writing happen on the agent's own thread.

Counters that must be exact under threads (hits, admitted events, metric counts) are
itertools.count objects: next() on one is a single C call, so no lock is needed.

Nothing here raises into the application: every entry point catches Exception and turns it into
an error event. (KeyboardInterrupt and SystemExit raised by the application's own signal handlers
are the application's and pass through.)
"""

from __future__ import annotations

import ast
import itertools
import math
import sys
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
from keyhole.agent.sites import AgentThread
from keyhole.protocol import events as ev
from keyhole.protocol.durations import format_duration
from keyhole.protocol.expression import TemplateField
from keyhole.protocol.limits import EXPRESSION_ERRORS_BEFORE_DISABLE, LOG_BYTES_PER_SECOND, CaptureLimits
from keyhole.protocol.probe_spec import ProbeSpec
from keyhole.protocol.redaction import RedactionRules

if TYPE_CHECKING:
    from keyhole.agent.runtime import Runtime

_clock = time.perf_counter
_getframe = sys._getframe
_ident = threading.get_ident
_truth = sa.truth
_MISSING = sa.MISSING
MAX_OPEN_CALLS = 10_000
NOT_ADMITTED = 0


def counter_value(counter: itertools.count[int]) -> int:
    """How many times next() was called on an itertools.count() started at 0."""
    text = repr(counter)  # "count(N)"
    return int(text[6:-1])


class Probe:
    """State and admission shared by every kind."""

    kind = ""
    captures = False  # counted against the process-wide capture rate

    def __init__(self, spec: ProbeSpec, runtime: Runtime) -> None:
        self.spec = spec
        self.id = spec.id
        self.runtime = runtime
        self._enabled = True
        self.installed = False
        self.expires = _clock() + spec.ttl
        # The rate limit (GCRA, see rate_limit.py) lives on the probe: a hit reads one attribute to
        # decide "drop". A disabled probe's allow_at is +inf, so the same test drops its hits too.
        self.allow_at = -math.inf
        self._tat = 0.0
        self._interval = 1.0 / spec.rate if spec.rate is not None else 0.0
        self._tolerance = self._interval * (max(1.0, spec.rate) - 1.0) if spec.rate is not None else 0.0
        self.max_hits = spec.max_hits
        self._hits = itertools.count()
        self._admitted = itertools.count()
        self.suppressed = 0
        self.errors = 0
        self.consecutive_errors = 0
        self.cost = 0.0  # seconds measured on application threads (admitted and evaluated hits)
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
    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = value
        if not value:
            self.allow_at = math.inf  # every later hit is dropped by the first test on the hit path

    @property
    def hits(self) -> int:
        # Hits dropped by the rate limiter (or after disabling) are counted in `suppressed` only.
        return counter_value(self._hits) + self.suppressed

    @property
    def admitted(self) -> int:
        return counter_value(self._admitted)

    def set_rules(self, rules: RedactionRules) -> None:
        self.names = NameFilter(rules, self.spec.reveal)

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._error_limiter.reset_after_fork()

    def disable(self, reason: str) -> None:
        with self._lock:
            if not self.enabled:
                return
            self.enabled = False
        self.runtime.probe_disabled(self, reason)

    def expire(self) -> None:
        self.disable(f"expired: its time to live ({format_duration(self.spec.ttl)}) ran out")

    def stats(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "emitted": self.admitted,
            "suppressed": self.suppressed,
            "errors": self.errors,
            "cpu_ms": round((self.cost + self.ship_cost + self.hits * self.runtime.hit_overhead) * 1000, 3),
        }

    # --- the hit ---
    def _admit(self, now: float) -> int:
        """After the condition held: may this hit produce an event?

        0: no. n > 0: yes, the n-th event. -n: yes, the n-th and last one the hit limit allows.
        """
        if now >= self.expires:
            self.expire()
            return NOT_ADMITTED
        if AgentThread.busy and _ident() == AgentThread.ident:
            return NOT_ADMITTED  # the agent's own work never feeds its probes
        if self._interval:
            if now < self.allow_at:
                self.suppressed += 1
                return NOT_ADMITTED
            tat = self._tat
            tat = (tat if tat > now else now) + self._interval
            self._tat = tat
            self.allow_at = tat - self._tolerance
        if self.captures and not self.runtime.capture_limiter.try_acquire(now):
            self.suppressed += 1
            return NOT_ADMITTED
        n = next(self._admitted) + 1
        max_hits = self.max_hits
        if max_hits is not None:
            if n > max_hits:
                return NOT_ADMITTED
            if n == max_hits:
                self.enabled = False
                return -n
        return n

    def _after_emit(self, admitted: int) -> None:
        if admitted < 0:
            self.enabled = False
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
            event = self._event(ev.ERROR, now)
            event["error"] = str(exc)
            if self._suppressed_errors:
                event["suppressed"] = self._suppressed_errors
                self._suppressed_errors = 0
            self.runtime.emit(event)
        else:
            self._suppressed_errors += 1

    def _event(self, kind: str, now: float) -> dict[str, Any]:
        return {"probe": self.id, "kind": kind, "ts": now, "thread": _ident()}

    def _capturer(self) -> Capturer:
        return Capturer(self.names, self.limits)


class LineProbe(Probe):
    # A C callable that counts a hit when the probe needs nothing else (plain hit-count metrics).
    counter: Callable[[], object] | None = None

    def on_line(self) -> None:
        now = _clock()
        if now < self.allow_at:  # rate limited, or disabled
            self.suppressed += 1
            return
        next(self._hits)
        try:
            frame = _getframe(2)  # the application's frame: see LineSite
            scope = Scope(frame)
            condition = self.condition
            if condition is not None:
                if not _truth(condition.evaluate(scope)):
                    self.consecutive_errors = 0
                    return
                self.consecutive_errors = 0
            admitted = self._admit(now)
            if admitted:
                self.emit(frame, scope, now, admitted)
        except Exception as exc:
            self._failed(exc, now)
        finally:
            self.cost += _clock() - now

    def emit(self, frame: FrameType, scope: Scope, now: float, admitted: int) -> None:
        raise NotImplementedError


class SnapshotProbe(LineProbe):
    kind = ev.SNAPSHOT
    captures = True

    def __init__(self, spec: ProbeSpec, runtime: Runtime) -> None:
        super().__init__(spec, runtime)
        self.watch = tuple(compile_expression(w, runtime.rules, spec.reveal) for w in spec.checked_watch)

    def emit(self, frame: FrameType, scope: Scope, now: float, admitted: int) -> None:
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


class LogProbe(LineProbe):
    kind = ev.LOG

    def __init__(self, spec: ProbeSpec, runtime: Runtime) -> None:
        super().__init__(spec, runtime)
        # (literal text before the field, local name for the fast path or None, expression, format spec)
        segments: list[tuple[str, str | None, CompiledExpression | None, str]] = []
        literal = ""
        for part in spec.checked_template:
            if isinstance(part, TemplateField):
                body = part.expression.body
                name = body.id if isinstance(body, ast.Name) and not part.format_spec else None
                expression = compile_expression(part.expression, runtime.rules, spec.reveal)
                segments.append((literal, name, expression, part.format_spec))
                literal = ""
            else:
                literal += part
        self.segments = tuple(segments)
        self.tail = literal
        self.bytes = ByteBudget(LOG_BYTES_PER_SECOND)

    def reset_after_fork(self) -> None:
        super().reset_after_fork()
        self.bytes.reset_after_fork()

    def emit(self, frame: FrameType, scope: Scope, now: float, admitted: int) -> None:
        out: list[str] = []
        error: EvalError | None = None
        names = self.names
        local_get = scope.locals.get
        for literal, name, expression, spec in self.segments:
            if literal:
                out.append(literal)
            if name is not None:
                # A bare local name: read it here; anything else goes through the evaluator.
                value = local_get(name, _MISSING)
                if value is not _MISSING:
                    cls = type(value)
                    if cls is str:
                        out.append(value)
                    elif cls is int:
                        out.append(int.__repr__(value))
                    else:
                        out.append(format_value(value, "", names))
                    continue
            try:
                out.append(format_value(expression.evaluate(scope), spec, names))  # type: ignore[union-attr]
            except StepBudgetExceeded:
                raise
            except EvalError as exc:
                error = exc
                out.append(f"<error: {exc}>")
        if self.tail:
            out.append(self.tail)
        message = "".join(out)
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE]
        budget = self.bytes  # ByteBudget.take, inlined
        available = budget.available + (now - budget._last) * budget.per_second if budget._last else budget.available
        if available > budget.capacity:  # noqa: PLR1730 - min() is a call, this is the hot path
            available = budget.capacity
        budget._last = now
        size = len(message)
        if size <= available:
            budget.available = available - size
            self.runtime.emit({"probe": self.id, "kind": "log", "ts": now, "thread": _ident(), "message": message})
        else:
            budget.available = available
            self.suppressed += 1
        if admitted < 0:
            self._after_emit(admitted)
        if error is not None:
            self._failed(error, now)
        elif self.consecutive_errors:
            self.consecutive_errors = 0


class MetricProbe(LineProbe):
    kind = ev.METRIC

    def __init__(self, spec: ProbeSpec, runtime: Runtime) -> None:
        super().__init__(spec, runtime)
        self.value = self._compile(spec.checked_value, runtime.rules)
        self.aggregate = MetricAggregate()
        self.started = _clock()
        # A plain hit counter needs nothing from the frame: the hit is the count.
        self.counter_only = self.condition is None and self.value is None and self.max_hits is None
        if self.counter_only:
            self.counter = self._hits.__next__
        self._reported_hits = 0

    def reset_after_fork(self) -> None:
        super().reset_after_fork()
        self.aggregate.reset_after_fork()
        self.started = _clock()

    def on_line(self) -> None:
        now = _clock()
        if now < self.allow_at:  # disabled
            self.suppressed += 1
            return
        next(self._hits)
        try:
            scope = Scope(_getframe(2))
            condition = self.condition
            if condition is not None and not _truth(condition.evaluate(scope)):
                self.consecutive_errors = 0
                return
            if self.max_hits is not None:
                admitted = self._admit(now)
                if not admitted:
                    return
                self._after_emit(admitted)
            if self.value is None:
                self.aggregate.hit()
            else:
                value = self.value.evaluate(scope)
                if not is_finite_number(value):
                    raise EvalError(f"metric value must be a finite number (got {sa.type_name(value)})")
                self.aggregate.add(float(value))
            self.consecutive_errors = 0
        except Exception as exc:
            self._failed(exc, now)
        finally:
            self.cost += _clock() - now

    def report(self, final: bool = False) -> dict[str, Any] | None:
        """The interval's aggregate as an event, or None when nothing was hit (except the final report)."""
        now = _clock()
        data = self.aggregate.take()
        if self.counter_only:
            hits = self.hits
            data["count"] = hits - self._reported_hits
            self._reported_hits = hits
        if not data["count"] and not final:
            return None
        event = self._event(ev.METRIC, now)
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

    def reset_after_fork(self) -> None:
        super().reset_after_fork()
        self._calls = {}

    def on_enter(self, frame: FrameType) -> None:
        now = _clock()
        if now < self.allow_at:  # rate limited, or disabled
            self.suppressed += 1
            return
        next(self._hits)
        try:
            condition = self.condition
            if condition is not None:
                if not _truth(condition.evaluate(Scope(frame))):
                    self.consecutive_errors = 0
                    return
                self.consecutive_errors = 0
            admitted = self._admit(now)
            if not admitted:
                return
            call = abs(admitted)
            if len(self._calls) < MAX_OPEN_CALLS:
                self._calls[id(frame)] = (call, now)
            code = frame.f_code
            flags = code.co_flags
            nargs = code.co_argcount + code.co_kwonlyargcount + bool(flags & 0x04) + bool(flags & 0x08)
            local_vars = frame.f_locals
            event = self._event(ev.FUNCTION, now)
            event["phase"] = "entry"
            event["call"] = call
            event["args"] = self._capturer().fields(
                ((n, local_vars[n]) for n in code.co_varnames[:nargs] if n in local_vars), 0
            )
            self.runtime.emit(event)
            self._after_emit(admitted)
        except Exception as exc:
            self._failed(exc, now)
        finally:
            self.cost += _clock() - now

    def _exit(self, frame: FrameType, phase: str, value: Any) -> None:
        entry = self._calls.pop(id(frame), None)
        if entry is None:
            return
        now = _clock()
        try:
            call, began = entry
            event = self._event(ev.FUNCTION, now)
            event["phase"] = phase
            event["call"] = call
            event[phase] = self._capturer().value(value)
            event["duration_ms"] = round((now - began) * 1000, 4)
            self.runtime.emit(event)
        except Exception as exc:
            self._failed(exc, now)
        finally:
            self.cost += _clock() - now

    def on_return(self, frame: FrameType, value: Any) -> None:
        if self._calls:
            self._exit(frame, "return", value)

    def on_unwind(self, frame: FrameType, exc: BaseException) -> None:
        if self._calls:
            self._exit(frame, "exception", exc)


class ExceptionProbe(Probe):
    """When an exception of the given type leaves the function: every traceback frame with its locals."""

    kind = ev.EXCEPTION
    captures = True

    def __init__(self, spec: ProbeSpec, runtime: Runtime) -> None:
        super().__init__(spec, runtime)
        self.exception = spec.exception or "Exception"

    def matches(self, exc: BaseException) -> bool:
        wanted = self.exception
        return any(sa.class_name(k) == wanted or sa.qualified_name(k) == wanted for k in sa.mro(type(exc)))

    def on_unwind(self, frame: FrameType, exc: BaseException) -> None:
        now = _clock()
        if now < self.allow_at:  # rate limited, or disabled
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
            tb = exc.__traceback__
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
            self._failed(error, now)
        finally:
            self.cost += _clock() - now


class StacksProbe(Probe):
    """Every thread's stack and every asyncio task's await chain, taken by the agent's thread on a schedule."""

    kind = ev.STACKS

    def __init__(self, spec: ProbeSpec, runtime: Runtime) -> None:
        super().__init__(spec, runtime)
        self.next_at: float | None = _clock() + (spec.after or 0.0)

    def taken(self) -> None:
        next(self._admitted)
        next(self._hits)


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
