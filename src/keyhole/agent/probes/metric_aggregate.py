"""A metric probe's aggregate of values: exact count, sum, min and max, and percentiles from a
reservoir sample. (Plain hit counts need none of this: they are itertools.count objects.)"""

from __future__ import annotations

import random
import threading
from typing import Any

RESERVOIR = 1024


class MetricAggregate:
    """Accumulates one report interval; `take()` returns the report and starts the next interval."""

    __slots__ = ("_lock", "_random", "maximum", "minimum", "sample", "seen", "total")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._random = random.Random()
        self._clear()

    def _clear(self) -> None:
        self.seen = 0
        self.total = 0.0
        self.minimum: float | None = None
        self.maximum: float | None = None
        self.sample: list[float] = []

    def add(self, value: float) -> None:
        with self._lock:
            self.seen += 1
            self.total += value
            if self.minimum is None or value < self.minimum:
                self.minimum = value
            if self.maximum is None or value > self.maximum:
                self.maximum = value
            if len(self.sample) < RESERVOIR:
                self.sample.append(value)
            else:
                j = self._random.randrange(self.seen)
                if j < RESERVOIR:
                    self.sample[j] = value

    def take(self) -> dict[str, Any]:
        with self._lock:
            seen, total = self.seen, self.total
            minimum, maximum, sample = self.minimum, self.maximum, self.sample
            self._clear()
        report: dict[str, Any] = {"count": seen}
        if seen:
            sample.sort()
            report.update(
                sum=total,
                min=minimum,
                max=maximum,
                mean=total / seen,
                p50=_rank(sample, 0.50),
                p90=_rank(sample, 0.90),
                p99=_rank(sample, 0.99),
            )
        return report

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._clear()


def _rank(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of a sorted, non-empty list."""
    index = max(0, min(len(ordered) - 1, int(q * len(ordered) + 0.999999) - 1))
    return ordered[index]
