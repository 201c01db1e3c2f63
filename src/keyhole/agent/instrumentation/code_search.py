"""Finding the application's code: loaded source files, the functions and code objects of a file, and
code that is running right now. Used only on the agent's thread or at import, never on a probe hit."""

from __future__ import annotations

import gc
import os
import sys
import threading
import types
from collections.abc import Callable, Iterable
from types import CodeType, FunctionType

from keyhole.agent.instrumentation.line_index import walk_code
from keyhole.agent.reading import safe_attributes, safe_types

_KEYHOLE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def normalize(path: str) -> str:
    return os.path.normcase(os.path.abspath(path))


def is_keyhole_file(path: str) -> bool:
    return normalize(path).startswith(_KEYHOLE_ROOT + os.sep)


def spec_matches(spec_file: str, path: str) -> bool:
    """A probe's file matches a loaded path when it is that path, or a suffix of it at a '/' boundary."""
    wanted = spec_file.replace("\\", "/")
    actual = path.replace("\\", "/")
    if os.path.isabs(wanted):
        return normalize(wanted).replace("\\", "/") == actual
    return actual == wanted or actual.endswith("/" + wanted.lstrip("./"))


def loaded_sources() -> dict[str, list[str]]:
    """{normalized path of a .py file: [names of modules loaded from it]}."""
    out: dict[str, list[str]] = {}
    for name, module in list(sys.modules.items()):
        if module is None or not safe_types.is_module(module):
            continue
        namespace = safe_attributes.instance_dict(module)
        if namespace is None:
            continue
        path = namespace.get("__file__")
        if type(path) is not str or not path.endswith(".py"):
            continue
        out.setdefault(normalize(path), []).append(name)
    return out


def running_codes() -> list[CodeType]:
    """Code objects of every frame on every thread's stack right now."""
    codes: list[CodeType] = []
    for frame in sys._current_frames().values():
        current: types.FrameType | None = frame
        while current is not None:
            codes.append(current.f_code)
            current = current.f_back
    return codes


def trace_function_active() -> bool:
    """True when a sys.settrace-style tracer (a debugger, a coverage tool) is active in any thread."""
    if sys.gettrace() is not None or threading.gettrace() is not None:
        return True
    return any(frame.f_trace is not None for frame in sys._current_frames().values())


# Generators and coroutines hold their frame here; by id, because the garbage collector hands over
# every object in the process and comparing an application's class could run its metaclass.
_FRAME_OF = {
    id(types.GeneratorType): types.GeneratorType.__dict__["gi_frame"].__get__,
    id(types.CoroutineType): types.CoroutineType.__dict__["cr_frame"].__get__,
    id(types.AsyncGeneratorType): types.AsyncGeneratorType.__dict__["ag_frame"].__get__,
}
_RUNNING_OF = {
    id(types.GeneratorType): types.GeneratorType.__dict__["gi_running"].__get__,
    id(types.CoroutineType): types.CoroutineType.__dict__["cr_running"].__get__,
    id(types.AsyncGeneratorType): types.AsyncGeneratorType.__dict__["ag_running"].__get__,
}


def scan_functions(
    paths: set[str], suspended_in: Callable[[CodeType], bool] | None = None
) -> tuple[list[FunctionType], int]:
    """One scan of the garbage collector: every function whose code comes from one of `paths`, and
    how many suspended generators or coroutines are paused in code that `suspended_in` accepts."""
    names: dict[str, bool] = {}
    found: list[FunctionType] = []
    suspended = 0
    for obj in gc.get_objects():
        kind = id(type(obj))
        if kind == id(FunctionType):
            filename = obj.__code__.co_filename
            matched = names.get(filename)
            if matched is None:
                matched = names[filename] = normalize(filename) in paths
            if matched:
                found.append(obj)
        elif suspended_in is not None and kind in _FRAME_OF:
            frame = _FRAME_OF[kind](obj)
            if frame is not None and not _RUNNING_OF[kind](obj) and suspended_in(frame.f_code):
                suspended += 1
    return found, suspended


def functions_from(paths: set[str]) -> list[FunctionType]:
    """Every function object whose code comes from one of `paths` (a scan of the garbage collector)."""
    return scan_functions(paths)[0]


def codes_from(paths: set[str], roots: Iterable[CodeType]) -> list[CodeType]:
    """All code objects from `paths` reachable from `roots` (nested functions, lambdas, class bodies)."""
    seen: set[int] = set()
    out: list[CodeType] = []
    names: dict[str, bool] = {}
    for root in roots:
        for code in walk_code(root):
            if id(code) in seen:
                continue
            seen.add(id(code))
            matched = names.get(code.co_filename)
            if matched is None:
                matched = names[code.co_filename] = normalize(code.co_filename) in paths
            if matched:
                out.append(code)
    return out
