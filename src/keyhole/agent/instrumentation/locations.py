"""Where a probe goes: from ``file:line`` or ``module:Qualified.name`` to the code objects to instrument.

A resolution is one of: install (here are the code objects), pending (not loaded yet: the probe is set
when it is), or error (the message says what is wrong and what would work).
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from types import CodeType

from keyhole.agent.instrumentation.code_search import (
    codes_from,
    functions_from,
    is_keyhole_file,
    loaded_sources,
    normalize,
    running_codes,
    spec_matches,
)
from keyhole.agent.instrumentation.line_index import FileIndex, code_key, index_source, is_function_code, own_lines
from keyhole.agent.reading import safe_attributes, safe_types

INSTALL = "install"
PENDING = "pending"
ERROR = "error"


@dataclass
class Resolution:
    status: str
    message: str = ""
    path: str | None = None
    targets: list[CodeType] = field(default_factory=list)


@dataclass(frozen=True)
class ModuleBeingImported:
    name: str
    path: str
    code: CodeType


Original = Callable[[CodeType], CodeType]


def _live_codes(path: str, original: Original, module: ModuleBeingImported | None) -> tuple[list[CodeType], set[int]]:
    """The file's code objects that exist now, and the ids of those reachable from a function (code
    swapping on 3.11 can reach those: functions run them again; a running module body it cannot)."""
    if module is not None and module.path == path:
        codes = codes_from({path}, [module.code])
        return codes, {id(c) for c in codes}
    # Only real functions: since 3.11 CPython also wraps a module body being run in a function object,
    # which nothing calls again.
    function_roots = [original(f.__code__) for f in functions_from({path}) if is_function_code(f.__code__)]
    from_functions = codes_from({path}, function_roots)
    running = [original(c) for c in running_codes() if normalize(c.co_filename) == path]
    return codes_from({path}, [*function_roots, *running]), {id(c) for c in from_functions}


def _find_path(spec_file: str, module: ModuleBeingImported | None) -> Resolution | str:
    if module is not None:
        if spec_matches(spec_file, module.path):
            return module.path
        return Resolution(
            PENDING, f"no loaded module comes from {spec_file} yet; the probe is set when one is imported"
        )
    matches = [p for p in loaded_sources() if spec_matches(spec_file, p)]
    if not matches:
        return Resolution(
            PENDING, f"no loaded module comes from {spec_file} yet; the probe is set when one is imported"
        )
    if len(matches) > 1:
        shown = ", ".join(sorted(matches)[:5])
        return Resolution(
            ERROR,
            f"{spec_file} matches {len(matches)} loaded files ({shown}); give more of the path to choose one",
        )
    return matches[0]


def resolve_line(
    spec_file: str,
    line: int,
    original: Original,
    live_frames: bool,
    module: ModuleBeingImported | None = None,
) -> Resolution:
    found = _find_path(spec_file, module)
    if isinstance(found, Resolution):
        return found
    path = found
    if is_keyhole_file(path):
        return Resolution(ERROR, "keyhole does not probe its own code", path)
    index = FileIndex(module.code) if module is not None and module.path == path else index_source(path)
    live, reachable = _live_codes(path, original, module)
    if index is None:
        # No readable source: what is loaded is all we know.
        all_lines = frozenset().union(*(own_lines(c) for c in live)) if live else frozenset()
        if line not in all_lines:
            near = sorted(all_lines, key=lambda n: abs(n - line))[:2]
            hint = f"; lines with loaded code nearby: {', '.join(map(str, sorted(near)))}" if near else ""
            return Resolution(
                ERROR, f"{spec_file}:{line} has no loaded code (the source file is not readable){hint}", path
            )
        targets = [c for c in live if line in own_lines(c)]
        return Resolution(INSTALL, path=path, targets=targets)
    if line not in index.all_lines:
        near = index.nearest(line)
        hint = f"; nearest lines with code: {', '.join(map(str, near))}" if near else ""
        return Resolution(ERROR, f"{spec_file}:{line} has no code{hint}", path)
    owners = index.owners(line)
    keys = {o.key for o in owners}
    targets = [c for c in live if code_key(c) in keys and line in own_lines(c)]
    if not live_frames:
        targets = [c for c in targets if id(c) in reachable]
    if targets:
        return Resolution(INSTALL, path=path, targets=targets)
    if any(not o.is_function for o in owners):
        if not live_frames and module is None:
            return Resolution(
                ERROR,
                f"{spec_file}:{line} is module-level code (or a class body) that is already running or has run; "
                "on Python 3.11 keyhole can only probe it if the probe is set before the module is imported",
                path,
            )
        return Resolution(
            ERROR,
            f"{spec_file}:{line} is module-level code (or a class body), which ran when the module was imported; "
            "probe a line inside a function, or set the probe before the module is imported",
            path,
        )
    return Resolution(PENDING, f"the function holding {spec_file}:{line} has not been created yet", path)


def resolve_function(
    module_name: str,
    qualname: str,
    original: Original,
    module: ModuleBeingImported | None = None,
) -> Resolution:
    if module is not None:
        if module.name != module_name:
            return Resolution(PENDING, f"module {module_name} is not imported yet; the probe is set when it is")
        path = module.path
    else:
        loaded = sys.modules.get(module_name)
        if loaded is None or not safe_types.is_module(loaded):
            return Resolution(PENDING, f"module {module_name} is not imported yet; the probe is set when it is")
        namespace = safe_attributes.instance_dict(loaded) or {}
        filename = namespace.get("__file__")
        if type(filename) is not str or not filename.endswith(".py"):
            return Resolution(ERROR, f"module {module_name} has no Python source file to probe")
        path = normalize(filename)
    if is_keyhole_file(path):
        return Resolution(ERROR, "keyhole does not probe its own code", path)
    live, _ = _live_codes(path, original, module)
    targets = [c for c in live if c.co_qualname == qualname and is_function_code(c)]
    if targets:
        return Resolution(INSTALL, path=path, targets=targets)
    index = FileIndex(module.code) if module is not None else index_source(path)
    names = index.qualnames() if index is not None else {c.co_qualname for c in live if is_function_code(c)}
    if qualname in names:
        return Resolution(PENDING, f"{module_name}:{qualname} has not been created yet", path)
    close = difflib.get_close_matches(qualname, sorted(names), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return Resolution(ERROR, f"{module_name} has no function {qualname}{hint}", path)


def describe(code: CodeType, line: int | None) -> str:
    where = f"{code.co_filename}:{line}" if line is not None else f"{code.co_filename}:{code.co_firstlineno}"
    return f"{where} in {code.co_qualname}"
