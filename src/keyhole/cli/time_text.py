"""Times as an engineer on call reads them: how long ago, how long left."""

from __future__ import annotations

import time


def span(seconds: float) -> str:
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{(whole % 3600) // 60:02d}m"


def ago(epoch: float) -> str:
    return f"{span(time.time() - epoch)} ago"


def left(epoch: float) -> str:
    remaining = epoch - time.time()
    return f"{span(remaining)} left" if remaining > 0 else "expired"
