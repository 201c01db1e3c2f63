"""Compiling text without the compiler printing warnings into someone else's stderr.

The compiler warns about some sources (an invalid escape sequence, for one) through the warnings
module, which prints on stderr: in the agent that is the application's stderr. A warnings filter
scoped to a pseudo file name, added once, turns those warnings into errors (expressions: refuse them)
or silences them (indexing an application's source), and touches no other warning in the process.
"""

from __future__ import annotations

import ast
import re
import sys
import warnings
from types import CodeType
from typing import Literal

EXPRESSION_FILE = "<keyhole-expression>"
SOURCE_FILE = "<keyhole-source>"
_CATEGORIES = (SyntaxWarning, DeprecationWarning)  # 3.11 reports invalid escapes as DeprecationWarning


def _ensure_filters() -> None:
    # Idempotent and cheap when present; re-added if the application reset its warning filters.
    rules: tuple[tuple[Literal["error", "ignore"], str], ...] = (("error", EXPRESSION_FILE), ("ignore", SOURCE_FILE))
    for action, name in rules:
        pattern = re.escape(name) + r"\Z"
        for category in _CATEGORIES:
            if not any(
                f[0] == action and f[2] is category and f[3] is not None and f[3].pattern == pattern
                for f in warnings.filters
            ):
                warnings.filterwarnings(action, category=category, module=pattern)


def parse_expression(text: str) -> ast.Expression:
    """ast.parse in eval mode; a source the compiler would warn about raises SyntaxError instead."""
    _ensure_filters()
    try:
        tree: ast.Expression = ast.parse(text, filename=EXPRESSION_FILE, mode="eval")
    except (SyntaxWarning, DeprecationWarning) as exc:
        raise SyntaxError(str(exc)) from None
    return tree


def compile_source(source: str) -> CodeType:
    """Compile a module's source for its line table, silently, with the running interpreter's -O level."""
    _ensure_filters()
    code: CodeType = compile(source, SOURCE_FILE, "exec", dont_inherit=True, optimize=sys.flags.optimize)
    return code
