"""Which lines of a file hold code, and which code object owns each line.

Built from the module's own code object when keyhole sees it being imported, otherwise by compiling
the source file (compiling is not running: nothing of the module executes). Live code objects are
matched to the index by (qualified name, first line).
"""

from __future__ import annotations

import dis
import os
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from types import CodeType

from keyhole.protocol.quiet_compile import compile_source

CO_OPTIMIZED = 0x0001  # set on function bodies, not on module or class bodies


def walk_code(code: CodeType) -> Iterator[CodeType]:
    """The code object and every code object nested in its constants."""
    stack = [code]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(c for c in current.co_consts if type(c) is CodeType)


def own_lines(code: CodeType) -> frozenset[int]:
    """Lines where this code object (not nested ones) runs an instruction after its prologue."""
    lines: set[int] = set()
    started = False
    for instruction in dis.get_instructions(code):
        if not started:
            started = instruction.opname == "RESUME"
            continue
        positions = instruction.positions
        if positions is not None and positions.lineno is not None:
            lines.add(positions.lineno)
    return frozenset(lines)


def is_function_code(code: CodeType) -> bool:
    return bool(code.co_flags & CO_OPTIMIZED)


CodeKey = tuple[str, int]


def code_key(code: CodeType) -> CodeKey:
    return (code.co_qualname, code.co_firstlineno)


@dataclass(frozen=True)
class Owner:
    key: CodeKey
    is_function: bool


class FileIndex:
    def __init__(self, module_code: CodeType) -> None:
        self.lines_of: dict[CodeKey, frozenset[int]] = {}
        self.function_of: dict[CodeKey, bool] = {}
        for code in walk_code(module_code):
            key = code_key(code)
            self.lines_of[key] = self.lines_of.get(key, frozenset()) | own_lines(code)
            self.function_of[key] = is_function_code(code)
        self.all_lines = frozenset().union(*self.lines_of.values())

    def owners(self, line: int) -> list[Owner]:
        return [Owner(key, self.function_of[key]) for key, lines in self.lines_of.items() if line in lines]

    def nearest(self, line: int) -> list[int]:
        """The closest line with code above and below `line`."""
        above = [n for n in self.all_lines if n < line]
        below = [n for n in self.all_lines if n > line]
        return ([max(above)] if above else []) + ([min(below)] if below else [])

    def qualnames(self) -> set[str]:
        return {key[0] for key, is_fn in self.function_of.items() if is_fn}


_CACHE: dict[str, tuple[tuple[int, int], FileIndex]] = {}


def index_source(path: str) -> FileIndex | None:
    """Index a source file by compiling it (cached by modification time and size); None if unreadable."""
    try:
        stat = os.stat(path)
        stamp = (stat.st_mtime_ns, stat.st_size)
        cached = _CACHE.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        with tokenize.open(path) as handle:
            source = handle.read()
        code = compile_source(source)
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return None
    index = FileIndex(code)
    if len(_CACHE) > 256:
        _CACHE.clear()
    _CACHE[path] = (stamp, index)
    return index
