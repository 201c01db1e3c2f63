"""Probes as they run: what happens on the application's thread when a probed line or function is hit.

The order of work on every hit is the point of this module. First the "drop" decision: one clock
read and one comparison (the rate limiter's next allowed time, which is +inf once the probe is
disabled), touching nothing else. Then the condition; then admission (expiry, rate, hit limit,
process capture rate); only then capture, into plain values. Encoding, redaction by value and
writing happen on the agent's own thread.

Counters that must be exact under threads (hits, admitted events, metric counts) are
itertools.count objects: next() on one is a single C call, so no lock is needed.

Nothing here raises into the application: every entry point catches Exception and turns it into
an error event. (KeyboardInterrupt and SystemExit raised by the application's own signal handlers
are the application's and pass through.)
"""

from __future__ import annotations

import ast
import itertools
import operator
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, NamedTuple, Protocol

from keyhole.agent.errors import EvalError, StepBudgetExceeded
from keyhole.agent.probes.agent_thread import AgentThread
from keyhole.agent.probes.metric_aggregate import MetricAggregate
from keyhole.agent.probes.rate_limit import ByteBudget, RateLimiter
from keyhole.agent.reading import safe_access as sa
from keyhole.agent.reading.capture import TEXT_MARGIN, Capturer, NameFilter
from keyhole.agent.reading.evaluator import (
    CompiledExpression,
    Scope,
    as_metric_value,
    compile_expression,
    frame_locals_of,
)
from keyhole.agent.reading.formatting import format_value
from keyhole.agent.reading.frames import capture_stack, frame_locals
from keyhole.protocol import events as ev
from keyhole.protocol.durations import format_duration
from keyhole.protocol.expression import TemplateField
from keyhole.protocol.limits import (
    EXPRESSION_ERRORS_BEFORE_DISABLE,
    LOG_BYTES_PER_SECOND,
    MAX_MESSAGE,
    CaptureLimits,
)
from keyhole.protocol.probe_spec import ProbeSpec
from keyhole.protocol.redaction import RedactionRules

_clock = time.perf_counter
_getframe = sys._getframe
_ident = threading.get_ident
_truth = sa.truth
_MISSING = sa.MISSING
_traceback_of = BaseException.__dict__["__traceback__"].__get__
MAX_OPEN_CALLS = 10_000
# A log line is cut on the hit with this much to spare; the agent's thread redacts, then cuts to
# MAX_MESSAGE, so a secret that crosses the final cut is still recognised whole.
_MESSAGE_KEEP = MAX_MESSAGE + TEXT_MARGIN


def counter_value(counter: itertools.count[int]) -> int:
    """How many times next() was called on an itertools.count() started at 0."""
    text = repr(counter)  # "count(N)"
    return int(text[6:-1])


class Runtime(Protocol):
    """What a running probe needs from its agent: where events go, the shared limits, how to be disabled."""

    rules: RedactionRules
    limits: CaptureLimits
    capture_limiter: RateLimiter
    hit_overhead: float

    def emit(self, event: dict[str, Any]) -> None:
        """Queue an event for the agent's thread; never blocks."""

    def probe_disabled(self, probe: Probe, reason: str) -> None:
        """Report that a probe stopped, and have its instrumentation removed."""


def _on_agent_thread() -> bool:
    return AgentThread.busy and _ident() == AgentThread.ident


class Probe:
    """State and admission shared by every kind."""

    kind = ""
    captures = False  # counted against the process-wide capture rate

    def __init__(self, spec: ProbeSpec, runtime: Runtime) -> None:
        self.spec = spec
        self.id = spec.id
        self.runtime = runtime
        self._enabled = True
        self._reported = False
        self.installed = False
        self.expires = _clock() + spec.ttl
        self.limiter = RateLimiter(spec.rate)
        self.max_hits = spec.max_hits
        self._hits = itertools.count()
        self._admitted = itertools.count()
        self._hits_base = 0
        self._admitted_base = 0
        self.suppressed = 0  # dropped before counting as a hit: rate limited, or disabled
        self.limited = 0  # counted as a hit, then dropped: process capture rate, log bytes per second
        self.errors = 0
        self.consecutive_errors = 0
        self.cost = 0.0  # seconds measured on application threads (admitted and evaluated hits)
        self.ship_cost = 0.0  # seconds spent on the agent's thread finishing this probe's events
        self._error_limiter = RateLimiter(1.0)
        self._suppressed_errors = 0
        self._lock = threading.Lock()
        self.limits: CaptureLimits = runtime.limits
        self.set_rules(runtime.rules)

    def set_rules(self, rules: RedactionRules) -> None:
        """(Re)compile for these redaction rules: capture and the expressions' key checks both use them."""
        self.names = NameFilter(rules, self.spec.reveal)
        self.condition = self._compile(self.spec.checked_condition, rules)

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
            self.limiter.close()  # every later hit is dropped by the first test on the hit path

    @property
    def hits(self) -> int:
        return counter_value(self._hits) - self._hits_base + self.suppressed

    @property
    def admitted(self) -> int:
        return counter_value(self._admitted) - self._admitted_base

    def reset_after_fork(self) -> None:
        """A forked child counts from zero: its own hits, limits and cost."""
        self._lock = threading.Lock()
        self._hits_base = counter_value(self._hits)
        self._admitted_base = counter_value(self._admitted)
        self.suppressed = self.limited = self.errors = self.consecutive_errors = 0
        self.cost = self.ship_cost = 0.0

    def disable(self, reason: str) -> None:
        """Stop the probe, report why, and have its instrumentation removed: once, whatever the cause."""
        with self._lock:
            if self._reported:
                return
            self._reported = True
        self.enabled = False
        self.runtime.probe_disabled(self, reason)

    def expire(self) -> None:
        self.disable(f"expired: its time to live ({format_duration(self.spec.ttl)}) ran out")

    def stats(self) -> dict[str, Any]:
        return {
            "hits": self.hits,
            "emitted": self.admitted,
            "suppressed": self.suppressed + self.limited,
            "errors": self.errors,
            "cpu_ms": round((self.cost + self.ship_cost + self.hits * self.runtime.hit_overhead) * 1000, 3),
        }

    # --- the hit ---
    def _admit(self, now: float) -> int:
        """After the condition held: may this hit produce an event?

        0: no. n > 0: yes, the n-th event. -n: yes, the n-th and last one the hit limit allows.
        """
        if not self._enabled:
            return 0
        if now >= self.expires:
            self.expire()
            return 0
        if _on_agent_thread():
            return 0  # the agent's own work never feeds its probes
        if not self.limiter.try_acquire(now):
            self.limited += 1
            return 0
        if self.captures and not self.runtime.capture_limiter.try_acquire(now):
            self.limited += 1
            return 0
        n = next(self._admitted) + 1 - self._admitted_base
        max_hits = self.max_hits
        if max_hits is not None:
            if n > max_hits:
                return 0
            if n == max_hits:
                self.enabled = False  # no more hits; disable() reports once the event is out
                return -n
        return n

    def _after_emit(self, admitted: int) -> None:
        if admitted < 0:
            self.disable(f"hit limit reached ({self.max_hits} events)")

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
            self._failed(exc, now)
        finally:
            self.cost += _clock() - now

    def emit(self, frame: FrameType, scope: Scope | None, now: float, admitted: int) -> None:
        """Make the event. `scope` is the condition's, or None when there was no condition."""
        raise NotImplementedError


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


class _FastTemplate(NamedTuple):
    layout: str
    lookup: Callable[[Any], Any]
    single: bool


_FAST_FORMAT_TYPES = frozenset({str, int, float, bool, type(None)})


class LogProbe(LineProbe):
    kind = ev.LOG

    def __init__(self, spec: ProbeSpec, runtime: Runtime) -> None:
        super().__init__(spec, runtime)
        self.bytes = ByteBudget(LOG_BYTES_PER_SECOND)

    def set_rules(self, rules: RedactionRules) -> None:
        super().set_rules(rules)
        # (literal text before the field, local name for the fast path or None, expression, format spec)
        segments: list[tuple[str, str | None, CompiledExpression, str]] = []
        literal = ""
        for part in self.spec.checked_template:
            if isinstance(part, TemplateField):
                body = part.expression.body
                name = body.id if isinstance(body, ast.Name) and not part.format_spec else None
                segments.append(
                    (literal, name, compile_expression(part.expression, rules, self.spec.reveal), part.format_spec)
                )
                literal = ""
            else:
                literal += part
        self.segments = tuple(segments)
        self.tail = literal
        # Every field a bare local name: one C lookup for all of them, and one %-format when their
        # values are exact built-in scalars (whose __str__ is C). "%.Ns" copies at most N characters
        # of a string, however long it is.
        self.fast: _FastTemplate | None = None
        local_names = [name for _, name, _, _ in segments if name is not None]
        if segments and len(local_names) == len(segments):
            field = f"%.{_MESSAGE_KEEP}s"
            layout = "".join(lit.replace("%", "%%") + field for lit, _, _, _ in segments) + literal.replace("%", "%%")
            self.fast = _FastTemplate(layout, operator.itemgetter(*local_names), len(segments) == 1)

    def emit(self, frame: FrameType, scope: Scope | None, now: float, admitted: int) -> None:
        fast = self.fast
        if fast is not None:
            try:
                values = fast.lookup(scope.locals if scope is not None else frame_locals_of(frame))
            except Exception:  # not all locals (a global, a missing name, opaque locals): the long way
                values = _MISSING
            if values is not _MISSING:
                if fast.single:
                    values = (values,)
                if set(map(type, values)) <= _FAST_FORMAT_TYPES:
                    self._ship(fast.layout % values, now, admitted, None)
                    return
        self._slow_emit(frame, scope, now, admitted)

    def _slow_emit(self, frame: FrameType, scope: Scope | None, now: float, admitted: int) -> None:
        out: list[str] = []
        error: EvalError | None = None
        names = self.names
        # Bare local names need only the locals; a Scope is made for the first other expression.
        local_get = (scope.locals if scope is not None else frame_locals_of(frame)).get
        for literal, name, expression, spec in self.segments:
            if literal:
                out.append(literal)
            if name is not None:
                # A bare local name: read it here; anything else goes through the evaluator.
                value = local_get(name, _MISSING)
                if value is not _MISSING:
                    cls = type(value)
                    if cls is str:
                        out.append(value if len(value) <= _MESSAGE_KEEP else value[:_MESSAGE_KEEP])
                    elif cls is int:
                        out.append(int.__repr__(value))
                    else:
                        out.append(format_value(value, "", names))
                    continue
            try:
                if scope is None:
                    scope = Scope(frame)
                text = format_value(expression.evaluate(scope), spec, names)
                out.append(text if len(text) <= _MESSAGE_KEEP else text[:_MESSAGE_KEEP])
            except StepBudgetExceeded:
                raise
            except EvalError as exc:
                error = exc
                out.append(f"<error: {exc}>")
        if self.tail:
            out.append(self.tail)
        self._ship("".join(out), now, admitted, error)

    def _ship(self, message: str, now: float, admitted: int, error: EvalError | None) -> None:
        if len(message) > _MESSAGE_KEEP:
            message = message[:_MESSAGE_KEEP]
        if self.bytes.take(now, min(len(message), MAX_MESSAGE)):
            self.runtime.emit({"probe": self.id, "kind": "log", "ts": now, "thread": _ident(), "message": message})
        else:
            self.limited += 1
        self._after_emit(admitted)
        if error is not None:
            self._failed(error, now)
        elif self.consecutive_errors:
            self.consecutive_errors = 0


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
                    raise EvalError(f"metric value must be a finite number (got {sa.type_name(value)})")
                self.aggregate.add(number)
            self.consecutive_errors = 0
            self._after_emit(admitted)
        except Exception as exc:
            self._failed(exc, now)
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
            self._failed(exc, now)
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
