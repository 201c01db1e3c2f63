"""Which agent instances are connected now: an instance counts as connected while it holds a probe
poll open, or within a grace period after its last request. Kept in memory, because it describes
this gateway process's sockets; the database keeps the last contact across restarts."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

# A poll is re-sent at once after each answer; a gap this long means the agent is gone.
CONNECTED_GRACE = 5.0


@dataclass
class _Presence:
    polls: int = 0
    last: float = 0.0
    closed: bool = False  # its poll's connection closed: gone now, not after the grace


class Connections:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._instances: dict[str, _Presence] = {}
        self._recorded: set[str] = set()  # whose connection the audit log has, and not yet its end

    def said_hello(self, instance: str) -> None:
        """Its hello recorded the connection in the audit log."""
        with self._lock:
            self._touch(instance)
            self._recorded.add(instance)

    def _touch(self, instance: str) -> _Presence:
        presence = self._instances.setdefault(instance, _Presence())
        presence.last, presence.closed = time.time(), False
        return presence

    def poll_started(self, instance: str) -> None:
        with self._lock:
            self._touch(instance).polls += 1

    def poll_ended(self, instance: str) -> None:
        with self._lock:
            presence = self._instances.setdefault(instance, _Presence())
            presence.polls = max(0, presence.polls - 1)
            if not presence.closed:
                presence.last = time.time()

    def gone(self, instance: str) -> None:
        """Its poll connection closed: not connected, whatever the grace says."""
        with self._lock:
            self._instances[instance] = _Presence(closed=True)

    def _connected(self, instance: str, now: float) -> bool:
        presence = self._instances.get(instance)
        if presence is None or presence.closed:
            return False
        return presence.polls > 0 or now - presence.last < CONNECTED_GRACE

    def connected(self, instance: str) -> bool:
        with self._lock:
            return self._connected(instance, time.time())

    def changes(self) -> tuple[list[str], list[str]]:
        """Instances connected since the last call without a hello (back after a gap, or polling a
        restarted gateway), and instances gone since: each reported once, for the audit log. If
        recording them fails, `unreport` puts them back."""
        now = time.time()
        with self._lock:
            departed = sorted(i for i in self._recorded if not self._connected(i, now))
            self._recorded.difference_update(departed)
            for instance in [i for i in self._instances if not self._connected(i, now)]:
                del self._instances[instance]  # what is not connected needs no presence
            arrived = sorted(set(self._instances) - self._recorded)
            self._recorded.update(arrived)
        return arrived, departed

    def unreport(self, arrived: list[str], departed: list[str]) -> None:
        with self._lock:
            self._recorded.difference_update(arrived)
            self._recorded.update(departed)
