"""Operators in expressions: arithmetic on exact numbers, bounded repetition and concatenation, and
comparisons, each through safe_operations so that no application operator runs."""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

from keyhole.agent.errors import EvalError
from keyhole.agent.reading import decimals, safe_operations, safe_types
from keyhole.agent.reading.scope import Scope
from keyhole.protocol.expression import MAX_EXPONENT, MAX_REPEAT

MAX_RESULT_ITEMS = 100_000


def bounded(value: Any, scope: Scope) -> Any:
    """Charge for a freshly built container or string, refusing results that could exhaust memory."""
    if id(type(value)) in safe_types.SEQUENCE_IDS:
        n = len(value)
        if n > MAX_RESULT_ITEMS:
            raise EvalError(f"result would hold {n} items (the limit is {MAX_RESULT_ITEMS})")
        scope.charge(n // 64)
    return value


def _refuse_decimal(a: Any, b: Any) -> None:
    if decimals.decimal_base(type(a)) is not None or decimals.decimal_base(type(b)) is not None:
        raise EvalError(
            "Decimal arithmetic reads and changes the thread's decimal context; compare Decimals, "
            "or convert with float() first"
        )


def _numbers(a: Any, b: Any, op: str) -> None:
    if not (safe_operations.is_number(a) and safe_operations.is_number(b)):
        _refuse_decimal(a, b)
        raise EvalError(
            f"'{op}' needs numbers here (got {safe_types.type_name(a)} and {safe_types.type_name(b)}); "
            "keyhole does not run application operators"
        )


def _add(a: Any, b: Any, scope: Scope) -> Any:
    ta, tb = type(a), type(b)
    if safe_operations.is_number(a) and safe_operations.is_number(b):
        return a + b
    _refuse_decimal(a, b)
    if ta is tb and id(ta) in safe_types.SEQUENCE_IDS:
        if len(a) + len(b) > MAX_RESULT_ITEMS:
            raise EvalError(f"result would hold more than {MAX_RESULT_ITEMS} items")
        return bounded(a + b, scope)
    raise EvalError(f"'+' is not allowed between {safe_types.type_name(a)} and {safe_types.type_name(b)}")


def _mul(a: Any, b: Any, scope: Scope) -> Any:
    if safe_operations.is_number(a) and safe_operations.is_number(b):
        return a * b
    _refuse_decimal(a, b)
    seq, count = (a, b) if id(type(b)) in safe_types.INT_IDS else (b, a)
    if id(type(seq)) in safe_types.SEQUENCE_IDS and id(type(count)) in safe_types.INT_IDS:
        if count > MAX_REPEAT or len(seq) * max(count, 0) > MAX_RESULT_ITEMS:
            raise EvalError(f"repetition would build more than {MAX_RESULT_ITEMS} items")
        return bounded(seq * count, scope)
    raise EvalError(f"'*' is not allowed between {safe_types.type_name(a)} and {safe_types.type_name(b)}")


def _pow(a: Any, b: Any, scope: Scope) -> Any:
    _numbers(a, b, "**")
    if safe_types.derives(a, int) and safe_types.derives(b, int):
        if abs(b) > MAX_EXPONENT or (b > 0 and int.bit_length(a) * b > 1_000_000):
            raise EvalError(
                f"{safe_types.type_name(a)} ** {safe_operations.describe(b)} could explode "
                f"(exponent limit {MAX_EXPONENT})"
            )
    elif (
        (safe_types.derives(b, int) or safe_types.derives(b, float))
        and abs(b) > MAX_EXPONENT
        and safe_types.derives(a, int)
        and abs(a) > 1
    ):
        raise EvalError(f"exponent {safe_operations.describe(b)} could explode (limit {MAX_EXPONENT})")
    return a**b


def _ints(a: Any, b: Any, op: str) -> None:
    if id(type(a)) not in safe_types.INT_IDS or id(type(b)) not in safe_types.INT_IDS:
        raise EvalError(f"'{op}' needs integers (got {safe_types.type_name(a)} and {safe_types.type_name(b)})")


def _lshift(a: Any, b: Any, scope: Scope) -> Any:
    _ints(a, b, "<<")
    if b > MAX_EXPONENT or a.bit_length() + b > 1_000_000:
        raise EvalError(f"shift by {safe_operations.describe(b)} could explode (limit {MAX_EXPONENT})")
    return a << b


def _binop(op: str, fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any, Scope], Any]:
    def apply(a: Any, b: Any, scope: Scope) -> Any:
        _numbers(a, b, op)
        return fn(a, b)

    return apply


def _intop(op: str, fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any, Scope], Any]:
    def apply(a: Any, b: Any, scope: Scope) -> Any:
        _ints(a, b, op)
        return fn(a, b)

    return apply


BINARY_OPERATORS: dict[type[ast.operator], Callable[[Any, Any, Scope], Any]] = {
    ast.Add: _add,
    ast.Mult: _mul,
    ast.Pow: _pow,
    ast.LShift: _lshift,
    ast.Sub: _binop("-", lambda a, b: a - b),
    ast.Div: _binop("/", lambda a, b: a / b),
    ast.FloorDiv: _binop("//", lambda a, b: a // b),
    ast.Mod: _binop("%", lambda a, b: a % b),
    ast.RShift: _intop(">>", lambda a, b: a >> b),
    ast.BitAnd: _intop("&", lambda a, b: a & b),
    ast.BitOr: _intop("|", lambda a, b: a | b),
    ast.BitXor: _intop("^", lambda a, b: a ^ b),
}


def _op_is(a: Any, b: Any, scope: Scope) -> bool:
    return a is b


def _op_is_not(a: Any, b: Any, scope: Scope) -> bool:
    return a is not b


def _op_eq(a: Any, b: Any, scope: Scope) -> bool:
    return safe_operations.equals(a, b)


def _op_ne(a: Any, b: Any, scope: Scope) -> bool:
    return not safe_operations.equals(a, b)


def _op_in(a: Any, b: Any, scope: Scope) -> bool:
    if safe_types.builtin_base(type(b)) is not None:
        scope.charge(safe_operations.size(b) // 16 + 1)  # before the scan, not after
    found, _ = safe_operations.contains(b, a)
    return found


def _op_not_in(a: Any, b: Any, scope: Scope) -> bool:
    return not _op_in(a, b, scope)


def _ordering(symbol: str) -> Callable[[Any, Any, Scope], bool]:
    def compare(a: Any, b: Any, scope: Scope) -> bool:
        return safe_operations.order(symbol, a, b)

    return compare


COMPARISONS: dict[type[ast.cmpop], Callable[[Any, Any, Scope], bool]] = {
    ast.Is: _op_is,
    ast.IsNot: _op_is_not,
    ast.Eq: _op_eq,
    ast.NotEq: _op_ne,
    ast.In: _op_in,
    ast.NotIn: _op_not_in,
    ast.Lt: _ordering("<"),
    ast.LtE: _ordering("<="),
    ast.Gt: _ordering(">"),
    ast.GtE: _ordering(">="),
}
