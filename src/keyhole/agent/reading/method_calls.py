"""Method calls in expressions: the allowed methods of built-in strings, dicts, lists and tuples, run
through the base type's own C method (never a subclass's)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from keyhole.agent.errors import EvalError, KeyMissing
from keyhole.agent.reading import safe_operations, safe_types
from keyhole.agent.reading.operators import bounded
from keyhole.agent.reading.scope import Scope
from keyhole.protocol.expression import DICT_METHODS, STRING_METHODS

_TEXT_ARG_IDS = safe_types.type_ids(str, bytes, int, bool)
_TEXT_IDS = safe_types.type_ids(str, bytes)


def _text_args(args: list[Any]) -> None:
    for arg in args:
        if id(type(arg)) in _TEXT_ARG_IDS or arg is None:
            continue
        if type(arg) is tuple and all(id(type(a)) in _TEXT_IDS for a in arg):
            continue
        raise EvalError(f"string method arguments must be strings or integers (got {safe_types.type_name(arg)})")


def call_method(obj: Any, method: str, values: list[Any], scope: Scope, check: Callable[[Any], None]) -> Any:
    """`obj.method(*values)`: only the string, dict and list methods of the checker's allow-list, on
    built-in values; `check` refuses a key whose name is redacted."""
    base = safe_types.builtin_base(type(obj))
    if method in STRING_METHODS and base in (str, bytes):
        _text_args(values)
        scope.charge(safe_operations.size(obj) // 64 + 1)
        return bounded(getattr(base, method)(obj, *values), scope)
    if method in DICT_METHODS and base is dict:
        if method == "get":
            if not 1 <= len(values) <= 2:
                raise EvalError(".get() takes a key and an optional default")
            check(values[0])
            try:
                return safe_operations.dict_get(obj, values[0])
            except KeyMissing:
                return values[1] if len(values) == 2 else None
        if values:
            raise EvalError(f".{method}() takes no arguments")
        scope.charge(dict.__len__(obj) // 4 + 1)
        for key in dict.keys(obj):  # values as well: a secret's value must not come out unnamed
            check(key)
        return list(getattr(dict, method)(obj))
    if method == "count" and base in (list, tuple):
        if len(values) != 1:
            raise EvalError(".count() takes one argument")
        found = [v for v in safe_operations.iterate(obj)]
        scope.charge(len(found) // 4 + 1)
        if not safe_operations.all_plain(found) or not safe_operations.is_plain(values[0]):
            raise EvalError(".count() would compare objects with application __eq__")
        return found.count(values[0])
    raise EvalError(f".{method}() is not available on a {safe_types.type_name(obj)}")
