"""What every probe kind shares: its state, counters, admission and errors, and what it needs from its agent.

Probes run on the application's thread when a probed line or function is hit.

The order of work on every hit is the point of this module and of each kind's. First the "drop" decision: one clock
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

import itertools
import threading
import time
from typing import Any, Protocol

from keyhole.agent.errors import EvalError, StepBudgetExceeded
from keyhole.agent.probes.agent_thread import AgentThread
from keyhole.agent.probes.rate_limit import RateLimiter
from keyhole.agent.reading.capture import Capturer, NameFilter
from keyhole.agent.reading.evaluator import CompiledExpression, compile_expression
from keyhole.agent.reading.foreign_exceptions import from_application
from keyhole.protocol import events as ev
from keyhole.protocol.durations import format_duration
from keyhole.protocol.limits import EXPRESSION_ERRORS_BEFORE_DISABLE, CaptureLimits
from keyhole.protocol.probe_spec import ProbeSpec
from keyhole.protocol.redaction import RedactionRules

_clock = time.perf_counter
_ident = threading.get_ident


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
        self.no_stack = 0  # hits skipped because the application's stack had no room for them
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
        self.suppressed = self.limited = self.errors = self.consecutive_errors = self.no_stack = 0
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
            **({"no_stack": self.no_stack} if self.no_stack else {}),
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

    def _failed(self, exc: Exception, now: float) -> bool:
        """Account for an exception that ended a hit; True when it is the application's (a signal
        handler's, an asynchronous one), which the caller re-raises into the application."""
        if from_application(exc):
            return True
        if isinstance(exc, RecursionError):
            # The application's stack had no room for the hit (see LineSite): skip it, count it.
            self.no_stack += 1
            return False
        if isinstance(exc, StepBudgetExceeded):
            self.disable(f"expression cost budget exceeded: {exc}")
            return False
        if not isinstance(exc, EvalError):
            # A defect in keyhole, not in the user's expression: stop this probe and say so.
            self.disable(f"internal error in keyhole ({type(exc).__name__}: {exc}); the probe was stopped")
            return False
        self.errors += 1
        self.consecutive_errors += 1
        if self.consecutive_errors >= EXPRESSION_ERRORS_BEFORE_DISABLE:
            self.disable(f"expression failed {self.consecutive_errors} times in a row; last error: {exc}")
            return False
        if self._error_limiter.try_acquire(now):
            event = self._event(ev.ERROR, now)
            event["error"] = str(exc)
            if self._suppressed_errors:
                event["suppressed"] = self._suppressed_errors
                self._suppressed_errors = 0
            self.runtime.emit(event)
        else:
            self._suppressed_errors += 1
        return False

    def _event(self, kind: str, now: float) -> dict[str, Any]:
        return {"probe": self.id, "kind": kind, "ts": now, "thread": _ident()}

    def _capturer(self) -> Capturer:
        return Capturer(self.names, self.limits)
