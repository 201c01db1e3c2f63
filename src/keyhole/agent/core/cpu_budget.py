"""The process-wide CPU budget: keyhole may use at most a fraction of wall time over a sliding window.

Each probe adds the time its hits took (on application threads) and the time its events took to
redact, encode and write (on the agent's thread). The agent's thread checks the window a few times
a second; when the total passes the budget, the probe that used the most is disabled.
"""

from __future__ import annotations

from collections import deque

from keyhole.protocol.limits import CPU_BUDGET_FRACTION, CPU_BUDGET_WINDOW_SECONDS


class CpuBudget:
    def __init__(
        self,
        fraction: float = CPU_BUDGET_FRACTION,
        window: float = CPU_BUDGET_WINDOW_SECONDS,
    ) -> None:
        self.allowance = fraction * window
        self.window = window
        # (time, {probe id: seconds used in the tick})
        self._ticks: deque[tuple[float, dict[str, float]]] = deque()

    def record(self, now: float, used: dict[str, float]) -> None:
        """Add one tick of usage; forget ticks that left the window."""
        if used:
            self._ticks.append((now, used))
        while self._ticks and self._ticks[0][0] < now - self.window:
            self._ticks.popleft()

    def totals(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for _, used in self._ticks:
            for probe_id, seconds in used.items():
                totals[probe_id] = totals.get(probe_id, 0.0) + seconds
        return totals

    def over_budget(self) -> tuple[str, float, float] | None:
        """(the probe to disable, its seconds, everyone's seconds) when the window is over budget."""
        totals = self.totals()
        spent = sum(totals.values())
        if spent <= self.allowance or not totals:
            return None
        worst = max(totals, key=lambda k: totals[k])
        return worst, totals[worst], spent

    def forget(self, probe_id: str) -> None:
        for _, used in self._ticks:
            used.pop(probe_id, None)
