"""Rate limits whose "drop" decision is one float comparison.

GCRA (the generic cell rate algorithm): the limiter keeps the earliest time the next event may be
admitted. A hit before that time is dropped without touching anything else; a hit after it moves the
time forward. Up to `burst` events may pass at once after a quiet period.

No locks: these are soft limits. Two threads admitted at the same instant can let one extra event
through, which a rate cap tolerates; exact counts (hit limits) use itertools.count instead. Having
no lock also means nothing to repair in a forked child.
"""

from __future__ import annotations

import math


class RateLimiter:
    """`rate=None` admits everything (until close()); the hot path reads `allow_at` only."""

    __slots__ = ("_tat", "allow_at", "interval", "tolerance")

    def __init__(self, rate: float | None, burst: float | None = None) -> None:
        self.interval = 1.0 / rate if rate is not None else 0.0
        size = max(1.0, (rate or 1.0) if burst is None else burst)
        self.tolerance = self.interval * (size - 1.0)
        self._tat = 0.0
        self.allow_at = 0.0

    def try_acquire(self, now: float) -> bool:
        """Admit one event at `now` (seconds on the monotonic clock) if the rate allows it."""
        if now < self.allow_at:
            return False
        tat = self._tat
        tat = (tat if tat > now else now) + self.interval
        self._tat = tat
        self.allow_at = tat - self.tolerance
        return True

    def close(self) -> None:
        """Admit nothing from now on: every test of allow_at fails."""
        self.allow_at = math.inf


class ByteBudget:
    """Bytes per second (log lines), refilled continuously; a line that does not fit is dropped."""

    __slots__ = ("_last", "available", "capacity", "per_second")

    def __init__(self, per_second: float) -> None:
        self.per_second = per_second
        self.capacity = per_second
        self.available = per_second
        self._last = 0.0

    def take(self, now: float, size: int) -> bool:
        available = self.available
        if self._last:
            available = min(self.capacity, available + (now - self._last) * self.per_second)
        self._last = now
        if size > available:
            self.available = available
            return False
        self.available = available - size
        return True
