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


class Connections:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._instances: dict[str, _Presence] = {}
        self._recorded: set[str] = set()  # whose connection the audit log has, and not yet its end

    def said_hello(self, instance: str) -> None:
        """Its hello recorded the connection in the audit log."""
        self.seen(instance)
        with self._lock:
            self._recorded.add(instance)

    def changes(self) -> tuple[list[str], list[str]]:
        """Instances connected since the last call without a hello (back after a gap, or polling a
        restarted gateway), and instances gone since: each reported once, for the audit log."""
        now = time.time()
        with self._lock:
            gone = [
                instance
                for instance, presence in self._instances.items()
                if presence.polls == 0 and now - presence.last >= CONNECTED_GRACE
            ]
            for instance in gone:
                del self._instances[instance]
            departed = sorted(self._recorded.intersection(gone))
            self._recorded.difference_update(gone)
            arrived = sorted(set(self._instances) - self._recorded)
            self._recorded.update(arrived)
        return arrived, departed

    def seen(self, instance: str) -> None:
        with self._lock:
            self._instances.setdefault(instance, _Presence()).last = time.time()

    def poll_started(self, instance: str) -> None:
        with self._lock:
            presence = self._instances.setdefault(instance, _Presence())
            presence.polls += 1
            presence.last = time.time()

    def poll_ended(self, instance: str) -> None:
        with self._lock:
            presence = self._instances.setdefault(instance, _Presence())
            presence.polls = max(0, presence.polls - 1)
            presence.last = time.time()

    def gone(self, instance: str) -> None:
        """Its poll connection closed: not connected, whatever the grace says."""
        with self._lock:
            self._instances[instance] = _Presence()

    def connected(self, instance: str) -> bool:
        with self._lock:
            presence = self._instances.get(instance)
            if presence is None:
                return False
            return presence.polls > 0 or time.time() - presence.last < CONNECTED_GRACE
