"""Dispatch from an instrumented place to the probes set there.

A site is what instrumentation calls: the sys.monitoring callbacks look sites up by code object; on
Python 3.11 the injected bytecode calls a site's bound method directly. A site's probe tuple is
replaced whole when probes come and go, so a hit never sees a half-updated list.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

_getframe = sys._getframe


class LineTarget(Protocol):
    """What a line site calls: a probe's C counter, or else its on_line (keyhole.agent.probes)."""

    counter: Callable[[], object] | None
    no_stack: int  # hits skipped for want of stack room

    def on_line(self) -> None: ...


class UnwindTarget(Protocol):
    no_stack: int

    def on_unwind(self, frame: FrameType, exc: BaseException) -> None: ...


class CallTarget(UnwindTarget, Protocol):
    def on_enter(self, frame: FrameType) -> None: ...

    def on_return(self, frame: FrameType, value: Any) -> None: ...


class LineSite:
    """The probes on one line of one code object.

    A hit calls `counters` (C callables: next() of a plain counter's itertools.count) and then `calls`
    (probes' on_line methods). on_line takes no frame: a probe that needs one reads sys._getframe(2)
    itself, after its cheap checks, so a hit its rate limiter drops never materialises a frame
    object. The depth is the same from both backends: the application's frame, the dispatcher
    (sys.monitoring callback, or LineSite.fire on 3.11), then on_line.
    """

    __slots__ = ("calls", "counters", "line", "probes")

    def __init__(self, line: int) -> None:
        self.line = line
        self.set_probes(())

    def set_probes(self, probes: tuple[LineTarget, ...]) -> None:
        self.probes = probes
        self.counters: tuple[Callable[[], object], ...] = tuple(p.counter for p in probes if p.counter is not None)
        self.calls: tuple[Callable[[], None], ...] = tuple(p.on_line for p in probes if p.counter is None)

    def fire(self) -> None:
        """Called by bytecode injected at the line (Python 3.11)."""
        for counter in self.counters:
            counter()
        for call in self.calls:
            try:
                call()
            except RecursionError:
                # No stack room for the probe: the application is near its recursion limit. The hit
                # is skipped and counted, inline (a call would need the room that is missing), and
                # the RecursionError, keyhole's own, never reaches the application.
                call.__self__.no_stack += 1  # type: ignore[attr-defined]


class FunctionSite:
    __slots__ = ("entry", "exit", "unwind")

    def __init__(self) -> None:
        self.entry: tuple[CallTarget, ...] = ()
        self.exit: tuple[CallTarget, ...] = ()
        self.unwind: tuple[UnwindTarget, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.entry or self.exit or self.unwind)

    def run_enter(self, frame: FrameType) -> None:
        for probe in self.entry:
            try:
                probe.on_enter(frame)
            except RecursionError:
                probe.no_stack += 1

    def run_return(self, frame: FrameType, value: Any) -> None:
        for probe in self.exit:
            try:
                probe.on_return(frame, value)
            except RecursionError:
                probe.no_stack += 1

    def run_unwind(self, frame: FrameType, exc: BaseException) -> None:
        for probe in self.unwind:
            try:
                probe.on_unwind(frame, exc)
            except RecursionError:
                probe.no_stack += 1

    # Called by injected bytecode (Python 3.11): the loops again, not a call to run_*, so that a hit
    # needs one frame less of the application's stack.
    def enter(self) -> None:
        frame = _getframe(1)
        for probe in self.entry:
            try:
                probe.on_enter(frame)
            except RecursionError:
                probe.no_stack += 1

    def leave(self, value: Any) -> None:
        frame = _getframe(1)
        for probe in self.exit:
            try:
                probe.on_return(frame, value)
            except RecursionError:
                probe.no_stack += 1

    def fail(self, exc: BaseException) -> None:
        frame = _getframe(1)
        for probe in self.unwind:
            try:
                probe.on_unwind(frame, exc)
            except RecursionError:
                probe.no_stack += 1


class CodePlan:
    """Everything probed in one code object: line sites by line number, and the function site."""

    __slots__ = ("code", "function", "lines")

    def __init__(self, code: Any) -> None:
        self.code = code
        self.lines: dict[int, LineSite] = {}
        self.function = FunctionSite()

    def __bool__(self) -> bool:
        return bool(self.lines) or bool(self.function)

    def line_numbers(self) -> frozenset[int]:
        return frozenset(line for line, site in self.lines.items() if site.probes)
