"""The built-in functions an expression may call (len, min, max, abs, round, sum, any, all, sorted,
isinstance, int, float, str, bool, typename), each on exact built-in types only and charged for the
elements it walks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from keyhole.agent.errors import EvalError
from keyhole.agent.reading import decimals, safe_operations, safe_types
from keyhole.agent.reading.foreign_exceptions import from_application
from keyhole.agent.reading.scope import Scope


def _elements(value: Any, scope: Scope) -> list[Any]:
    scope.charge(safe_operations.size(value) // 4 + 1)  # before copying
    return list(safe_operations.iterate(value))


def _minmax(name: str, args: list[Any], scope: Scope) -> Any:
    items = _elements(args[0], scope) if len(args) == 1 else args
    if not items:
        raise EvalError(f"{name}() of an empty container")
    if not all(safe_operations.is_plain(v, 1, ("__lt__", "__gt__", "__eq__")) for v in items):
        raise EvalError(f"{name}() would compare objects with application comparison methods")
    return min(items) if name == "min" else max(items)


def _helper_len(args: list[Any], scope: Scope) -> Any:
    return safe_operations.size(args[0])


def _helper_abs(args: list[Any], scope: Scope) -> Any:
    if not safe_operations.is_number(args[0]):
        raise EvalError(f"abs() needs a number (got {safe_types.type_name(args[0])})")
    return abs(args[0])


def _helper_round(args: list[Any], scope: Scope) -> Any:
    if not safe_operations.is_number(args[0]) or (len(args) > 1 and type(args[1]) is not int):
        raise EvalError("round() needs a number and an optional integer")
    return round(*args)


def _helper_sum(args: list[Any], scope: Scope) -> Any:
    items = _elements(args[0], scope)
    if not all(safe_operations.is_number(v) for v in items):
        raise EvalError("sum() needs numbers")
    return sum(items)


def _helper_any(args: list[Any], scope: Scope) -> Any:
    return any(safe_operations.truth(v) for v in _elements(args[0], scope))


def _helper_all(args: list[Any], scope: Scope) -> Any:
    return all(safe_operations.truth(v) for v in _elements(args[0], scope))


def _helper_sorted(args: list[Any], scope: Scope) -> Any:
    items = _elements(args[0], scope)
    if not all(safe_operations.is_plain(v, 1, ("__lt__", "__gt__", "__eq__")) for v in items):
        raise EvalError("sorted() would compare objects with application comparison methods")
    scope.charge(len(items))
    return sorted(items)


def _helper_isinstance(args: list[Any], scope: Scope) -> Any:
    return safe_types.isinstance_nominal(args[0], args[1])


def _convert(kind: type) -> Callable[[list[Any], Scope], Any]:
    def convert(args: list[Any], scope: Scope) -> Any:
        value = args[0]
        if kind is str:
            shown = decimals.text(value)
            if shown is not None:
                return shown
            if not safe_operations.is_plain(value, 0):
                raise EvalError(
                    f"str() of a {safe_types.type_name(value)} would call its __str__; "
                    "convert one of its fields instead"
                )
            return safe_operations.plain_str(value)
        if safe_operations.is_text(value):
            # The string data itself: a subclass's __str__ or __bytes__ never runs.
            text = str.__str__(value) if safe_types.derives(value, str) else bytes.__getitem__(value, slice(None))
            if len(text) > 4300:
                raise EvalError(f"{kind.__name__}() of a string longer than 4300 characters")
            return kind(text)
        if safe_operations.is_number(value):
            return kind(value)
        if decimals.decimal_base(type(value)) is not None:
            try:
                return decimals.to_float(value) if kind is float else decimals.to_int(value)
            except ArithmeticError as exc:  # the decimal module signals (a signalling NaN)
                if from_application(exc):
                    raise
                raise EvalError(
                    f"{kind.__name__}() of {safe_operations.describe(value)}: {type(exc).__name__}"
                ) from None
        raise EvalError(
            f"{kind.__name__}() of a {safe_types.type_name(value)} would call its conversion methods; "
            "convert one of its fields instead"
        )

    return convert


def _helper_bool(args: list[Any], scope: Scope) -> Any:
    return safe_operations.truth(args[0])


def _helper_typename(args: list[Any], scope: Scope) -> Any:
    return safe_types.type_name(args[0])


HELPERS: dict[str, Callable[[list[Any], Scope], Any]] = {
    "len": _helper_len,
    "min": lambda args, scope: _minmax("min", args, scope),
    "max": lambda args, scope: _minmax("max", args, scope),
    "abs": _helper_abs,
    "round": _helper_round,
    "sum": _helper_sum,
    "any": _helper_any,
    "all": _helper_all,
    "sorted": _helper_sorted,
    "isinstance": _helper_isinstance,
    "int": _convert(int),
    "float": _convert(float),
    "str": _convert(str),
    "bool": _helper_bool,
    "typename": _helper_typename,
}
ARITY = {
    "len": (1, 1),
    "abs": (1, 1),
    "round": (1, 2),
    "sum": (1, 1),
    "any": (1, 1),
    "all": (1, 1),
    "sorted": (1, 1),
    "isinstance": (2, 2),
    "int": (1, 1),
    "float": (1, 1),
    "str": (1, 1),
    "bool": (1, 1),
    "typename": (1, 1),
    "min": (1, 8),
    "max": (1, 8),
}
