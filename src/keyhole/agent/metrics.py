"""A metric probe's aggregate: exact count, sum, min and max, and percentiles from a reservoir sample."""

from __future__ import annotations

import random
import threading
from typing import Any

RESERVOIR = 1024


class MetricAggregate:
    """Accumulates one report interval; `take()` returns the report and starts the next interval."""

    __slots__ = ("_lock", "_random", "count", "maximum", "minimum", "sample", "seen", "total")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._random = random.Random()
        self._clear()

    def _clear(self) -> None:
        self.count = 0
        self.seen = 0
        self.total = 0.0
        self.minimum: float | None = None
        self.maximum: float | None = None
        self.sample: list[float] = []

    def hit(self) -> None:
        with self._lock:
            self.count += 1

    def add(self, value: float) -> None:
        with self._lock:
            self.count += 1
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
            count, seen, total = self.count, self.seen, self.total
            minimum, maximum, sample = self.minimum, self.maximum, self.sample
            self._clear()
        report: dict[str, Any] = {"count": count}
        if seen:
            sample.sort()
            report.update(
                values=seen,
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
