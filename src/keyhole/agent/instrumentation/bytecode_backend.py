"""Python 3.11: a copy of each probed code object with calls injected, swapped onto its functions.

A line probe injects a call to its site before the first instruction of each run of that line, and
at loop heads that backward jumps reach (so a ``for`` line fires once per iteration, as it does with
sys.monitoring on 3.12). A function probe injects a call after the prologue, one before every
RETURN_VALUE, and an exception handler that covers every instruction no other handler covers: it
reports the exception and re-raises it with the original traceback position.

The copy replaces the original on every function object that uses it (found by scanning the garbage
collector) and, through the constants of enclosing code objects, on functions created later.
Removing the probe puts the original code object back. Frames that are already running, including
suspended generators and coroutines, keep the code they started with.
"""

from __future__ import annotations

import weakref
from types import CodeType
from typing import Any

from keyhole.agent.instrumentation.backend import Backend, BackendUnavailable
from keyhole.agent.instrumentation.code_search import running_codes, scan_functions
from keyhole.agent.instrumentation.sites import CodePlan, FunctionSite, LineSite

try:
    from bytecode import Bytecode, Instr, Label
    from bytecode.instr import TryBegin, TryEnd

    HAVE_BYTECODE = True
except ImportError:  # pragma: no cover - a dependency on 3.11
    HAVE_BYTECODE = False


def _call0(target: Any, lineno: int | None) -> list[Any]:
    return [
        Instr("PUSH_NULL", lineno=lineno),
        Instr("LOAD_CONST", target, lineno=lineno),
        Instr("PRECALL", 0, lineno=lineno),
        Instr("CALL", 0, lineno=lineno),
        Instr("POP_TOP", lineno=lineno),
    ]


def _call_with_top(target: Any, lineno: int | None) -> list[Any]:
    """Call target(TOS) and leave the stack as it was."""
    return [
        Instr("PUSH_NULL", lineno=lineno),
        Instr("LOAD_CONST", target, lineno=lineno),
        Instr("COPY", 3, lineno=lineno),
        Instr("PRECALL", 1, lineno=lineno),
        Instr("CALL", 1, lineno=lineno),
        Instr("POP_TOP", lineno=lineno),
    ]


def _body_start(items: list[Any]) -> int:
    for i, item in enumerate(items):
        if isinstance(item, Instr) and item.name == "RESUME":
            return i + 1
    return 0


def _inject_lines(items: list[Any], start: int, sites: dict[int, LineSite]) -> list[Any]:
    position = {id(item): i for i, item in enumerate(items) if isinstance(item, Label)}
    backward_targets = {
        id(item.arg)
        for i, item in enumerate(items)
        if isinstance(item, Instr) and isinstance(item.arg, Label) and position.get(id(item.arg), i + 1) < i
    }
    out = items[:start]
    retarget: dict[int, Any] = {}
    previous_line: int | None = None
    for i in range(start, len(items)):
        item = items[i]
        if isinstance(item, Instr):
            line = item.lineno
            if line in sites and line != previous_line:
                out.extend(_call0(sites[line].fire, line))
            if line is not None:
                previous_line = line
            out.append(item)
            continue
        if isinstance(item, Label) and id(item) in backward_targets and previous_line in sites:
            following = next((x for x in items[i + 1 :] if isinstance(x, Instr)), None)
            if following is not None and following.lineno == previous_line:
                # A loop head inside the line's run: backward jumps go through a hook that the
                # fall-through path skips, so the first pass does not fire twice.
                hook = Label()
                retarget[id(item)] = hook
                out.append(Instr("JUMP_FORWARD", item, lineno=previous_line))
                out.append(hook)
                out.extend(_call0(sites[previous_line].fire, previous_line))
        out.append(item)
    if retarget:
        for item in out:
            if isinstance(item, Instr) and isinstance(item.arg, Label) and "BACKWARD" in item.name:
                target = retarget.get(id(item.arg))
                if target is not None:
                    item.arg = target
    return out


def _inject_function(items: list[Any], start: int, site: FunctionSite, first_line: int | None) -> list[Any]:
    out = items[:start]
    if site.entry:
        out.extend(_call0(site.enter, first_line))
    handler = Label() if site.unwind else None
    current: Any = None

    def open_region() -> None:
        nonlocal current
        if handler is not None:
            current = TryBegin(handler, True, 0)
            out.append(current)

    def close_region() -> None:
        nonlocal current
        if current is not None:
            out.append(TryEnd(current))
            current = None

    open_region()
    depth = 0
    for item in items[start:]:
        if isinstance(item, TryBegin):
            if depth == 0:
                close_region()
            depth += 1
            out.append(item)
            continue
        if isinstance(item, TryEnd):
            out.append(item)
            depth -= 1
            if depth == 0:
                open_region()
            continue
        if site.exit and isinstance(item, Instr) and item.name == "RETURN_VALUE":
            out.extend(_call_with_top(site.leave, item.lineno))
        out.append(item)
    close_region()
    if handler is not None:
        # Entered with [lasti, exception]; report, then re-raise restoring lasti for the traceback.
        out.append(handler)
        out.extend(
            [
                Instr("PUSH_NULL"),
                Instr("LOAD_CONST", site.fail),
                Instr("COPY", 3),
                Instr("PRECALL", 1),
                Instr("CALL", 1),
                Instr("POP_TOP"),
                Instr("RERAISE", 1),
            ]
        )
    return out


def inject(code: CodeType, plan: CodePlan) -> CodeType:
    """A copy of `code` that calls the plan's sites; the original is left untouched."""
    bc = Bytecode.from_code(code)
    items = list(bc)
    start = _body_start(items)
    line_sites = {n: plan.lines[n] for n in plan.line_numbers()}
    if line_sites:
        items = _inject_lines(items, start, line_sites)
    if plan.function:
        first_line = next((i.lineno for i in items[start:] if isinstance(i, Instr) and i.lineno), code.co_firstlineno)
        items = _inject_function(items, start, plan.function, first_line)
    rebuilt = Bytecode(items)
    rebuilt._copy_attr_from(bc)
    result: CodeType = rebuilt.to_code()
    return result


class BytecodeBackend(Backend):
    name = "bytecode"
    live_frames = False

    def __init__(self) -> None:
        # id(instrumented copy) -> (weak reference to the copy, the original)
        self._original: dict[int, tuple[weakref.ref[CodeType], CodeType]] = {}

    def start(self) -> None:
        if not HAVE_BYTECODE:
            raise BackendUnavailable(
                "the 'bytecode' package is missing; keyhole needs it on Python 3.11 (pip install bytecode)"
            )

    def stop(self) -> None:
        self._original.clear()

    def original(self, code: CodeType) -> CodeType:
        entry = self._original.get(id(code))
        if entry is not None and entry[0]() is code:
            return entry[1]
        return code

    def _remember(self, copy: CodeType, original: CodeType) -> None:
        key = id(copy)

        def forget(_: object, key: int = key) -> None:
            self._original.pop(key, None)

        self._original[key] = (weakref.ref(copy, forget), original)

    def _rebuild(self, code: CodeType, plans: dict[int, CodePlan], memo: dict[int, CodeType]) -> CodeType:
        key = id(code)
        done = memo.get(key)
        if done is not None:
            return done
        consts = code.co_consts
        new_consts = tuple(self._rebuild(c, plans, memo) if type(c) is CodeType else c for c in consts)
        result = code
        if any(a is not b for a, b in zip(consts, new_consts, strict=True)):
            result = code.replace(co_consts=new_consts)
        plan = plans.get(key)
        if plan:
            result = inject(result, plan)
        if result is not code:
            self._remember(result, code)
        memo[key] = result
        return result

    def apply(self, plans: dict[int, CodePlan], changed: list[CodeType], paths: set[str]) -> list[str]:
        memo: dict[int, CodeType] = {}
        targets = {id(c) for c in changed}
        functions, suspended = scan_functions(paths, lambda code: id(self.original(code)) in targets)
        for function in functions:
            current = function.__code__
            new = self._rebuild(self.original(current), plans, memo)
            if new is not current:
                function.__code__ = new
        running = sum(1 for code in running_codes() if id(self.original(code)) in targets)
        if running + suspended:
            return [
                f"{running + suspended} frame(s) already running this code ({running} on a thread's stack, "
                f"{suspended} in suspended generators or coroutines) keep the code they started with until "
                "they return; new calls see the change (Python 3.11 swaps code objects; 3.12+ reaches "
                "running frames too)"
            ]
        return []

    def instrument_module(self, code: CodeType, plans: dict[int, CodePlan]) -> CodeType:
        return self._rebuild(code, plans, {})
