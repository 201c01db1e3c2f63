"""Wakes long-polls: an agent waiting for its service's probe set, a CLI following a session's events.

Changes are made on request threads (FastAPI runs plain endpoints in a thread pool) while the
waiters are coroutines on the event loop, so bump() is thread-safe and hands the wake-up to the
waiter's own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Notifier:
    """A generation counter per key; waiting returns when the key's generation moves on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generations: dict[str, int] = {}
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}

    def generation(self, key: str) -> int:
        with self._lock:
            return self._generations.get(key, 0)

    def wake_all(self) -> None:
        """Answer every waiting long-poll now (the gateway is stopping)."""
        with self._lock:
            keys = list(self._waiters)
        for key in keys:
            self.bump(key)

    def bump(self, key: str) -> None:
        with self._lock:
            self._generations[key] = self._generations.get(key, 0) + 1
            waiters = self._waiters.pop(key, set())
        for future in waiters:
            with contextlib.suppress(RuntimeError):  # its loop has closed: nobody is waiting any more
                future.get_loop().call_soon_threadsafe(_wake, future)

    async def wait(self, key: str, seen: int, timeout: float) -> bool:
        """Wait until the generation of `key` differs from `seen`; False on timeout."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._generations.get(key, 0) != seen:
                return True
            self._waiters.setdefault(key, set()).add(future)
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                waiting = self._waiters.get(key)
                if waiting is not None:
                    waiting.discard(future)
                    if not waiting:
                        del self._waiters[key]
