"""Where finished events go: a JSON-lines file, or a function of the embedding program."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from keyhole.agent.core.shipping import encode


class Sink:
    """Receives finished events on the agent's thread, in batches."""

    def write(self, events: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the sink holds; called once, at stop."""


class JsonlFileSink(Sink):
    """Appends one JSON object per line. Each batch is one write() on an O_APPEND descriptor, so
    processes forked from the same agent (gunicorn workers) interleave whole lines."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.unwritable = 0
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def write(self, events: list[dict[str, Any]]) -> None:
        if self._fd is None or not events:
            return
        lines = []
        for event in events:
            try:
                lines.append(encode(event))
            except (ValueError, TypeError, RecursionError):
                self.unwritable += 1  # one bad event never costs the others
        data = b"".join(lines)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class CallbackSink(Sink):
    """Calls a function with each finished event (a plain dict). Runs on the agent's thread."""

    def __init__(self, callback: Callable[[dict[str, Any]], object]) -> None:
        self.callback = callback

    def write(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self.callback(event)


SinkTarget = Sink | Callable[[dict[str, Any]], object] | str | os.PathLike[str]


def check_sink(target: object) -> None:
    """Refuse what cannot be a sink, without opening anything."""
    if not isinstance(target, Sink | str | os.PathLike) and not callable(target):
        raise TypeError("sink must be a path, a callable taking an event dict, or a keyhole Sink")


def make_sink(target: SinkTarget) -> Sink:
    if isinstance(target, Sink):
        return target
    if isinstance(target, str | os.PathLike):
        return JsonlFileSink(target)
    if callable(target):
        return CallbackSink(target)
    raise TypeError("sink must be a path, a callable taking an event dict, or a keyhole Sink")
