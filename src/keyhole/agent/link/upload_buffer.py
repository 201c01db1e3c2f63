"""Finished events waiting for upload: bounded, so a gateway that is away costs memory up to a
limit and then drops (counted and reported), never blocks the agent's thread."""

from __future__ import annotations

import collections
import threading
from typing import Any

MAX_BUFFERED = 10_000


class UploadBuffer:
    def __init__(self, limit: int = MAX_BUFFERED) -> None:
        self.limit = limit
        self.dropped = 0  # since last reported
        self._events: collections.deque[dict[str, Any]] = collections.deque()
        self._ready = threading.Condition(threading.Lock())

    def put(self, events: list[dict[str, Any]]) -> None:
        with self._ready:
            room = self.limit - len(self._events)
            if room < len(events):
                self.dropped += len(events) - max(room, 0)
                events = events[: max(room, 0)]
            self._events.extend(events)
            if events:
                self._ready.notify()

    def take(self, limit: int, timeout: float) -> list[dict[str, Any]]:
        """Up to `limit` events, waiting up to `timeout` for the first."""
        with self._ready:
            if not self._events:
                self._ready.wait(timeout)
            return [self._events.popleft() for _ in range(min(limit, len(self._events)))]

    def put_back(self, events: list[dict[str, Any]]) -> None:
        """A batch that could not be sent goes back in front, as far as there is room."""
        with self._ready:
            room = self.limit - len(self._events)
            keep = events[: max(room, 0)]
            self.dropped += len(events) - len(keep)
            self._events.extendleft(reversed(keep))

    def take_dropped(self) -> int:
        with self._ready:
            count, self.dropped = self.dropped, 0
            return count

    def wake(self) -> None:
        with self._ready:
            self._ready.notify_all()

    def __len__(self) -> int:
        return len(self._events)

    def reset_after_fork(self) -> None:
        """The child starts empty: the parent's events are the parent's to send."""
        self._events = collections.deque()
        self._ready = threading.Condition(threading.Lock())
        self.dropped = 0
