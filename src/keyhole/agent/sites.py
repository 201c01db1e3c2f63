"""Dispatch from an instrumented place to the probes set there.

A site is what instrumentation calls: the sys.monitoring callbacks look sites up by code object; on
Python 3.11 the injected bytecode calls a site's bound method directly. A site's probe tuple is
replaced whole when probes come and go, so a hit never sees a half-updated list.
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from keyhole.agent.probes import ExceptionProbe, FunctionProbe, LineProbe

_getframe = sys._getframe


class AgentThread:
    """The ident of the agent's own thread: its work never produces events (it would feed itself)."""

    ident = -1


class LineSite:
    __slots__ = ("line", "probes")

    def __init__(self, line: int) -> None:
        self.line = line
        self.probes: tuple[LineProbe, ...] = ()

    def fire(self) -> None:
        """Called by bytecode injected at the line (Python 3.11)."""
        frame = _getframe(1)
        for probe in self.probes:
            probe.on_line(frame)


class FunctionSite:
    __slots__ = ("entry", "exit", "unwind")

    def __init__(self) -> None:
        self.entry: tuple[FunctionProbe, ...] = ()
        self.exit: tuple[FunctionProbe, ...] = ()
        self.unwind: tuple[FunctionProbe | ExceptionProbe, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.entry or self.exit or self.unwind)

    def run_enter(self, frame: FrameType) -> None:
        for probe in self.entry:
            probe.on_enter(frame)

    def run_return(self, frame: FrameType, value: Any) -> None:
        for probe in self.exit:
            probe.on_return(frame, value)

    def run_unwind(self, frame: FrameType, exc: BaseException) -> None:
        for probe in self.unwind:
            probe.on_unwind(frame, exc)

    # Called by injected bytecode (Python 3.11).
    def enter(self) -> None:
        self.run_enter(_getframe(1))

    def leave(self, value: Any) -> None:
        self.run_return(_getframe(1), value)

    def fail(self, exc: BaseException) -> None:
        self.run_unwind(_getframe(1), exc)


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
