"""Calling decimal.Decimal's C methods without touching the application's decimal context.

Almost every Decimal method (str, comparisons, format, int, float) fetches the calling thread's
decimal context, and creates it when the thread or asyncio task has none yet; comparisons also set
its flags (FloatOperation, InvalidOperation). Both are state the application can see: a context
created early misses a later change to decimal.DefaultContext, and code that checks flags for
inexact results would find flags it never raised. keyhole makes each such call inside a fresh, empty
contextvars.Context, so the decimal context it creates, and any flag it sets, is thrown away with it.
(bool() and hash() of a Decimal use no context and need none of this.)
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any, TypeVar

from keyhole.agent.errors import EvalError

try:  # the C implementation; the pure-Python fallback is handled like any other class
    import _decimal

    DECIMAL_TYPES: tuple[type, ...] = (_decimal.Decimal,)
except ImportError:  # pragma: no cover - CPython always builds _decimal
    DECIMAL_TYPES = ()

T = TypeVar("T")
MAX_INT_DIGITS = 4300  # CPython's own limit for int <-> str conversions
_mro_of: Any = type.__dict__["__mro__"].__get__  # never a metaclass's own __mro__


def isolated(fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) with a private decimal context (a new one per call: two threads, or a signal
    handler interrupting this call, cannot share one Context object)."""
    return contextvars.Context().run(fn, *args)


def decimal_base(cls: type) -> Any:
    """The C Decimal class among cls's bases, or None."""
    for klass in _mro_of(cls):
        for decimal_type in DECIMAL_TYPES:
            if klass is decimal_type:
                return decimal_type
    return None


def text(value: Any) -> str | None:
    """str() of a Decimal through the C method (a subclass's own __str__ never runs), or None for
    anything that is not a Decimal."""
    base = decimal_base(type(value))
    if base is None:
        return None
    result: str = isolated(base.__str__, value)
    return result


def to_int(value: Any) -> int:
    """int() of a Decimal, exact, refusing NaN, Infinity and integers too long to build cheaply."""
    base = decimal_base(type(value))
    _, digits, exponent = base.as_tuple(value)  # as_tuple() needs no context
    if type(exponent) is str:
        raise EvalError("int() of a Decimal NaN or Infinity")
    if len(digits) + exponent > MAX_INT_DIGITS:
        raise EvalError(f"int() of a Decimal with more than {MAX_INT_DIGITS} digits")
    result: int = isolated(base.__int__, value)
    return result


def to_float(value: Any) -> float:
    base = decimal_base(type(value))
    result: float = isolated(base.__float__, value)
    return result
