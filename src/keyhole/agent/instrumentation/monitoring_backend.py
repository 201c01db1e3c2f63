"""Python 3.12+: sys.monitoring with keyhole's own tool id, events enabled only on probed code objects.

LINE, PY_START and PY_RETURN are local events: they are switched on for the probed code objects
only, and the LINE callback returns DISABLE for any line that carries no probe, so unprobed lines of
a probed function cost nothing after their first execution. PY_UNWIND (an exception leaving a
function) exists only as a global event; it is switched on while a function or exception probe
exists and its callback returns at once for other code. Running frames, threads and suspended
generators see a probe as soon as it is set.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import CodeType
from typing import Any

from keyhole.agent.instrumentation.backend import Backend, BackendUnavailable
from keyhole.agent.instrumentation.code_search import normalize
from keyhole.agent.instrumentation.line_index import walk_code
from keyhole.agent.instrumentation.sites import CodePlan, FunctionSite

TOOL_ID = 4
MAIN_WATCH_SECONDS = 5.0
TOOL_NAME = "keyhole"
_getframe = sys._getframe


class MonitoringBackend(Backend):
    name = "sys.monitoring"
    live_frames = True

    def __init__(self) -> None:
        self._mon: Any = sys.monitoring  # type: ignore[attr-defined,unused-ignore]
        events = self._mon.events
        self._LINE = events.LINE
        self._PY_START = events.PY_START
        self._PY_RETURN = events.PY_RETURN
        self._PY_UNWIND = events.PY_UNWIND
        self._DISABLE = self._mon.DISABLE
        # Read on every hit; replaced whole (never mutated) so a hit sees a consistent view.
        self._lines: dict[int, dict[int, tuple[Any, ...]]] = {}
        self._entry: dict[int, FunctionSite] = {}
        self._exit: dict[int, FunctionSite] = {}
        self._unwind: dict[int, FunctionSite] = {}
        self._codes: dict[int, CodeType] = {}
        self._main_path: str | None = None
        self._on_main: Callable[[CodeType], None] | None = None
        self._main_deadline = 0.0
        self._started = False

    # --- lifecycle ---
    def start(self) -> None:
        mon = self._mon
        holder = mon.get_tool(TOOL_ID)
        if holder is not None:
            raise BackendUnavailable(
                f"sys.monitoring tool id {TOOL_ID}, which keyhole uses, is already held by {holder!r}; "
                "keyhole will not take it over: stop that tool, or start keyhole in a process without it"
            )
        mon.use_tool_id(TOOL_ID, TOOL_NAME)
        mon.register_callback(TOOL_ID, self._LINE, self._on_line)
        mon.register_callback(TOOL_ID, self._PY_START, self._on_start)
        mon.register_callback(TOOL_ID, self._PY_RETURN, self._on_return)
        mon.register_callback(TOOL_ID, self._PY_UNWIND, self._on_unwind)
        self._started = True

    def stop(self) -> None:
        if not self._started:
            return
        mon = self._mon
        mon.set_events(TOOL_ID, 0)
        for code in self._codes.values():
            mon.set_local_events(TOOL_ID, code, 0)
        for event in (self._LINE, self._PY_START, self._PY_RETURN, self._PY_UNWIND):
            mon.register_callback(TOOL_ID, event, None)
        mon.free_tool_id(TOOL_ID)
        self._lines, self._entry, self._exit, self._unwind, self._codes = {}, {}, {}, {}, {}
        self._started = False

    # --- callbacks (the hot path) ---
    def _on_line(self, code: CodeType, line: int) -> Any:
        sites = self._lines.get(id(code))
        if sites is None:
            return self._DISABLE
        site = sites.get(line)
        if site is None:
            return self._DISABLE
        counters, calls = site
        for counter in counters:
            counter()
        for call in calls:
            try:
                call()
            except RecursionError:  # no stack room for the hit: skipped and counted, never raised
                call.__self__.no_stack += 1
        return None

    def _on_start(self, code: CodeType, offset: int) -> Any:
        if self._on_main is not None:
            self._check_main(code)
        site = self._entry.get(id(code))
        if site is None:
            return None if self._on_main is not None else self._DISABLE
        try:
            site.run_enter(_getframe(1))
        except RecursionError:  # no stack room even for the site: the hit is skipped
            pass
        return None

    def _on_return(self, code: CodeType, offset: int, value: Any) -> Any:
        site = self._exit.get(id(code))
        if site is None:
            return self._DISABLE
        try:
            site.run_return(_getframe(1), value)
        except RecursionError:
            pass
        return None

    def _on_unwind(self, code: CodeType, offset: int, exc: BaseException) -> None:
        site = self._unwind.get(id(code))
        if site is not None:
            try:
                site.run_unwind(_getframe(1), exc)
            except RecursionError:
                pass

    # --- installing ---
    def apply(self, plans: dict[int, CodePlan], changed: list[CodeType], paths: set[str]) -> list[str]:
        lines = dict(self._lines)
        entry, exit_, unwind = dict(self._entry), dict(self._exit), dict(self._unwind)
        codes = dict(self._codes)
        wanted_events: list[tuple[CodeType, int]] = []
        for code in changed:
            key = id(code)
            plan = plans.get(key)
            events = 0
            numbers = plan.line_numbers() if plan is not None else frozenset()
            if plan is not None and numbers:
                lines[key] = {n: (plan.lines[n].counters, plan.lines[n].calls) for n in numbers}
                events |= self._LINE
            else:
                lines.pop(key, None)
            function = plan.function if plan is not None else None
            for table, wanted, event in (
                (entry, function is not None and bool(function.entry), self._PY_START),
                (exit_, function is not None and bool(function.exit), self._PY_RETURN),
            ):
                if wanted and function is not None:
                    table[key] = function
                    events |= event
                else:
                    table.pop(key, None)
            if function is not None and function.unwind:
                unwind[key] = function
            else:
                unwind.pop(key, None)
            if events or key in unwind:
                codes[key] = code
            else:
                codes.pop(key, None)
            wanted_events.append((code, events))
        # Publish the sites before events flow; a hit racing a removal finds no site and returns DISABLE.
        self._lines, self._entry, self._exit, self._unwind, self._codes = lines, entry, exit_, unwind, codes
        for code, events in wanted_events:
            # Off, then on: lines that earlier answered DISABLE start firing again.
            self._mon.set_local_events(TOOL_ID, code, 0)
            if events:
                self._mon.set_local_events(TOOL_ID, code, events)
        self._update_global()
        return []

    def _update_global(self) -> None:
        events = self._PY_UNWIND if self._unwind else 0
        if self._on_main is not None:
            events |= self._PY_START
        self._mon.set_events(TOOL_ID, events)

    def instrument_module(self, code: CodeType, plans: dict[int, CodePlan]) -> CodeType:
        self.apply(plans, [c for c in walk_code(code) if id(c) in plans], set())
        return code

    # --- the main script (keyhole run with `python script.py`) ---
    def watch_main(self, path: str, on_start: object) -> bool:
        self._main_path = path
        self._on_main = on_start  # type: ignore[assignment]
        # The watch is a global PY_START event: every call pays for it, so it ends when the main
        # script starts, or after a few seconds if it never shows up (a zipapp, a .pyc).
        self._main_deadline = time.monotonic() + MAIN_WATCH_SECONDS
        self._update_global()
        return True

    def _check_main(self, code: CodeType) -> None:
        try:
            if code.co_name != "<module>" or self._main_path is None:
                if time.monotonic() > self._main_deadline:
                    self._end_main_watch()
                return
            if normalize(code.co_filename) != self._main_path:
                return
            callback = self._on_main
            self._end_main_watch()
            if callback is not None:
                callback(code)
        except Exception:
            self._end_main_watch()  # never raise into the program's own code

    def _end_main_watch(self) -> None:
        self._on_main = None
        self._main_path = None
        self._update_global()
