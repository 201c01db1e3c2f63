"""Operations on application values without running application code (DESIGN rule 1): an operation
that dispatches to a dunder method (``==``, ``<``, ``hash``, ``len``, ``bool``, ``in``, subscripts,
``str()``, arithmetic) is performed only when the dunder that would run is a C slot of a built-in
type, and nothing is hashed or compared unless every object involved passes that test.

Every read the evaluator and the capture make goes through here, safe_types.py and
safe_attributes.py.
"""

from __future__ import annotations

import collections
import datetime
import functools
import operator
import sys
import types
from collections.abc import Iterable, Iterator
from typing import Any, Final, cast

from keyhole.agent.errors import KeyMissing, UnsafeOperation
from keyhole.agent.reading.decimals import DECIMAL_TYPES, isolated
from keyhole.agent.reading.foreign_exceptions import from_application
from keyhole.agent.reading.safe_types import (
    BASE_BY_ID,
    CONTAINER_BASES,
    INT_IDS,
    MISSING,
    SCALAR_IDS,
    SCALAR_TYPES,
    builtin_base,
    class_lookup,
    is_subclass,
    layout,
    type_ids,
    type_name,
)

_mro_of: Any = type.__dict__["__mro__"].__get__  # as safe_types.mro, without its call on hot paths
_WRAPPER = types.WrapperDescriptorType
_NONE_TYPE = type(None)
_DECIMAL_IDS: Final = frozenset(map(id, DECIMAL_TYPES))
_NUMBER_IDS: Final = frozenset(map(id, (bool, int, float, complex)))
_CLOCK_TYPES: Final = (datetime.datetime, datetime.time)
_TZINFO = {id(t): vars(t)["tzinfo"].__get__ for t in _CLOCK_TYPES}
_STR_IDS: Final = frozenset(map(id, (str, bytes)))

_TRUSTED_OWNERS: tuple[type, ...] = (
    object,
    *SCALAR_TYPES,
    *_CLOCK_TYPES,
    *CONTAINER_BASES,
    collections.OrderedDict,
    collections.defaultdict,
    slice,
    datetime.timezone,
    datetime.tzinfo,
    BaseException,
)
_TRUSTED_OWNER_IDS: Final = frozenset(map(id, _TRUSTED_OWNERS))

_CONTAINS_TEXT_IDS: Final = type_ids(str, bytes, int)


def dunder_is_c(cls: type, name: str) -> bool:
    """True when the method `name` that Python would run for cls is a C slot of a trusted built-in type."""
    if id(cls) in _TRUSTED_OWNER_IDS:
        return True
    found = class_lookup(cls, name)
    if found is MISSING or found is None:
        return True
    if type(found) is _WRAPPER:
        return id(found.__objclass__) in _TRUSTED_OWNER_IDS
    return False


_EQ = ("__eq__", "__ne__")
_ORDER = ("__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__")
_HASH = ("__hash__", "__eq__", "__ne__")


def _all_c(cls: type, names: tuple[str, ...]) -> bool:
    return id(cls) in SCALAR_IDS or all(dunder_is_c(cls, n) for n in names)


def is_plain(value: Any, depth: int = 2, names: tuple[str, ...] = _HASH) -> bool:
    """True when comparing or hashing value runs C code only (containers are checked element by element)."""
    cls = type(value)
    if id(cls) in SCALAR_IDS:
        return True
    if not _all_c(cls, names):
        return False
    if not tz_trusted(value):
        return False
    base = builtin_base(cls)
    if base is None or base in (str, bytes, bytearray, range):
        return True
    if depth <= 0:
        return False
    if base is dict:
        return all(is_plain(k, depth - 1, names) and is_plain(v, depth - 1, names) for k, v in dict.items(value))
    return all(is_plain(v, depth - 1, names) for v in _iterate(value, base))


def _iterate(value: Any, base: Any) -> Iterator[Any]:
    iterator: Iterator[Any] = base.__iter__(value)
    return iterator


def iterate(value: Any) -> Iterator[Any]:
    """Iterate a built-in container or string with the base type's own C iterator."""
    base = builtin_base(type(value))
    if base is None:
        raise UnsafeOperation(f"cannot iterate over a {layout(type(value)).qualname} (only built-in containers)")
    if base is dict:
        return iter(dict.keys(value))
    return _iterate(value, base)


def size(value: Any) -> int:
    """len() of a built-in container or string, through the base type's C slot."""
    cls = type(value)
    base: Any = builtin_base(cls)
    if base is None:
        raise UnsafeOperation(f"len() of a {layout(cls).qualname} would call its __len__; only built-in containers")
    result: int = base.__len__(value)
    return result


def _check_comparable(a: object, b: object, names: tuple[str, ...]) -> None:
    for v in (a, b):
        if not is_plain(v, 2, names):
            raise UnsafeOperation(
                f"comparing a {layout(type(v)).qualname} would call application code; compare its fields instead"
            )


def _decimal_pair(a: object, b: object) -> bool:
    """True when a Decimal is compared with a Decimal or a built-in number; raises for any other
    Decimal comparison (a Decimal inside a container is refused by is_plain)."""
    if id(type(a)) not in _DECIMAL_IDS and id(type(b)) not in _DECIMAL_IDS:
        return False
    for v in (a, b):
        if id(type(v)) not in _DECIMAL_IDS and id(type(v)) not in _NUMBER_IDS:
            raise UnsafeOperation(f"a Decimal compares with a Decimal, an int or a float here, not a {type_name(v)}")
    return True


_ORDERINGS: Final = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _compare_decimals(compare: Any, op: str, a: object, b: object) -> bool:
    try:
        return bool(isolated(compare, a, b))
    except ArithmeticError as exc:  # the decimal module signals: a NaN, or a trapped float operand
        if from_application(exc):
            raise
        raise UnsafeOperation(
            f"{describe(a)} {op} {describe(b)} is undefined for Decimals ({type(exc).__name__})"
        ) from None


def equals(a: object, b: object) -> bool:
    if _decimal_pair(a, b):
        return _compare_decimals(operator.eq, "==", a, b)
    _check_comparable(a, b, _EQ)
    return bool(a == b)


def order(op: str, a: Any, b: Any) -> bool:
    compare = _ORDERINGS[op]
    if _decimal_pair(a, b):
        return _compare_decimals(compare, op, a, b)
    _check_comparable(a, b, _ORDER)
    return bool(compare(a, b))


def truth(value: object) -> bool:
    cls = type(value)
    if id(cls) in SCALAR_IDS or id(cls) in BASE_BY_ID or id(cls) in _DECIMAL_IDS:  # bool(Decimal) needs no context
        return bool(value)
    if dunder_is_c(cls, "__bool__") and dunder_is_c(cls, "__len__"):
        return bool(value)
    raise UnsafeOperation(f"the truth value of a {layout(cls).qualname} would call its __bool__ or __len__")


def contains(container: Any, item: Any) -> tuple[bool, int]:
    """``item in container`` and the number of elements it had to look at (for the step budget)."""
    cls = type(container)
    base = builtin_base(cls)
    if base in (str, bytes, bytearray):
        if id(type(item)) not in _CONTAINS_TEXT_IDS:
            raise UnsafeOperation("'in' on a string needs a string on the left")
        found: bool = base.__contains__(container, item)
        return found, size(container) // 16 + 1
    if base is None or base is range:
        if base is range:
            return bool(range.__contains__(container, item)), 1
        raise UnsafeOperation(f"'in' on a {layout(cls).qualname} would call its __contains__")
    if not is_plain(item):
        raise UnsafeOperation(f"'in' with a {layout(type(item)).qualname} would call its __eq__ or __hash__")
    if base is dict:
        keys = dict.keys(container)
        if not all_plain(keys):
            raise UnsafeOperation("this dict has keys whose __eq__ or __hash__ is application code")
        return item in keys, len(keys) // 16 + 1
    elements = list(_iterate(container, base))
    if not all_plain(elements):
        raise UnsafeOperation("this container holds objects whose __eq__ or __hash__ is application code")
    return item in elements, len(elements) // 4 + 1


def all_plain(values: Iterable[Any]) -> bool:
    """True when every value is plain. Fast path: the set of their types is already known to be plain."""
    values = list(values)
    kinds = set(map(id, map(type, values)))
    if kinds <= SCALAR_IDS:
        return True
    return all(is_plain(v) for v in values)


def dict_get(d: Any, key: Any) -> Any:
    """``d[key]`` for a built-in dict (or subclass) without __missing__, __hash__ or __eq__ of user types."""
    if not is_plain(key):
        raise UnsafeOperation(f"a {layout(type(key)).qualname} key would call its __hash__ and __eq__")
    keys = dict.keys(d)
    if not all_plain(keys):
        raise UnsafeOperation("this dict has keys whose __eq__ or __hash__ is application code")
    value = dict.get(d, key, MISSING)
    if value is MISSING:
        raise KeyMissing(f"key {describe(key)} not found")
    return value


def get_item(obj: Any, key: Any) -> Any:
    """``obj[key]`` for built-in sequences, strings and dicts only."""
    cls = type(obj)
    base: Any = builtin_base(cls)
    if base is dict:
        return dict_get(obj, key)
    if base is None or base in (set, frozenset):
        raise UnsafeOperation(
            f"subscript on a {layout(cls).qualname} would call its __getitem__; only lists, tuples, strings and dicts"
        )
    if type(key) is slice:
        for part in (key.start, key.stop, key.step):
            if part is not None and id(type(part)) not in INT_IDS:
                raise UnsafeOperation("slice bounds must be integers")
    elif id(type(key)) not in INT_IDS:
        raise UnsafeOperation(f"index must be an integer (got {layout(type(key)).qualname})")
    try:
        return base.__getitem__(obj, key)
    except IndexError as exc:
        if from_application(exc):
            raise
        raise UnsafeOperation(f"index {key!r} out of range") from None


def is_number(value: object) -> bool:
    cls = type(value)
    if id(cls) in _NUMBER_IDS:
        return True
    for base in (int, float, complex):
        if is_subclass(cls, base):
            return all(dunder_is_c(cls, n) for n in _ARITH)
    return False


_ARITH = (
    "__add__",
    "__radd__",
    "__sub__",
    "__rsub__",
    "__mul__",
    "__rmul__",
    "__truediv__",
    "__rtruediv__",
    "__floordiv__",
    "__rfloordiv__",
    "__mod__",
    "__rmod__",
    "__pow__",
    "__rpow__",
    "__neg__",
    "__pos__",
    "__abs__",
    "__invert__",
    "__lshift__",
    "__rshift__",
    "__and__",
    "__or__",
    "__xor__",
    "__round__",
    "__index__",
    "__int__",
    "__float__",
    "__lt__",
    "__le__",
    "__gt__",
    "__ge__",
    "__eq__",
    "__ne__",
)


def is_text(value: object) -> bool:
    if id(type(value)) in _STR_IDS:
        return True
    return builtin_base(type(value)) in (str, bytes) and _all_c(type(value), _HASH)


def describe(value: object) -> str:
    """A short text for error messages: the value of an exact built-in scalar, else its type name."""
    cls = type(value)
    if cls is str:
        text = str.__repr__(value)
        return text if len(text) <= 60 else text[:57] + "...'"
    if cls is int and int.bit_length(cast(int, value)) > 64:
        return f"<int of {int.bit_length(cast(int, value))} bits>"
    if (id(cls) in SCALAR_IDS or id(cls) in _DECIMAL_IDS) and cls is not bytes:
        return plain_str(value)
    return f"<{type_name(value)}>"


def tz_trusted(value: object) -> bool:
    """False for a datetime or time whose tzinfo is application code (comparing, hashing or printing
    it would call that tzinfo's utcoffset()); True for everything else."""
    for klass in _mro_of(type(value)):
        getter = _TZINFO.get(id(klass))
        if getter is not None:
            tz = getter(value)
            if tz is None or type(tz) is datetime.timezone:
                return True
            zoneinfo = sys.modules.get("zoneinfo")
            return zoneinfo is not None and type(tz) is getattr(zoneinfo, "ZoneInfo", None)
    return True


# Digits an int may have to be printed, whatever the application set with sys.set_int_max_str_digits
# (0 means no limit, and the conversion is quadratic in the digits): CPython's own default.
MAX_INT_DIGITS = 4300
_MAX_INT_BITS = 14_284  # 2**14284 < 10**4300


def int_text(value: int) -> str:
    """The decimal text of an int (an int subclass's by its value), or UnsafeOperation for one too
    long to print: an ordinary error, like any other value keyhole will not show."""
    bits = int.bit_length(value)
    if bits <= _MAX_INT_BITS:
        try:
            text: str = int.__repr__(value)
            return text
        except ValueError as exc:  # the application lowered the interpreter's limit
            if from_application(exc):
                raise
            pass
    raise UnsafeOperation(f"an int of {bits} bits is too long to print (the limit is {MAX_INT_DIGITS} digits)")


_STR_OF: dict[int, Any] = {
    id(str): str.__str__,
    id(int): int_text,
    id(bool): bool.__repr__,
    id(float): float.__repr__,
    id(complex): complex.__repr__,
    id(bytes): bytes.__repr__,
    id(_NONE_TYPE): lambda v: "None",
    id(datetime.date): datetime.date.__str__,
    id(datetime.datetime): datetime.datetime.__str__,
    id(datetime.time): datetime.time.__str__,
    id(datetime.timedelta): datetime.timedelta.__str__,
    **{id(t): functools.partial(isolated, t.__str__) for t in DECIMAL_TYPES},
}


def plain_str_or_none(value: object) -> str | None:
    """str() of a scalar through its built-in base's C method (a str or int subclass's own __str__
    never runs), or None when no such method applies."""
    fn = _STR_OF.get(id(type(value)))
    if fn is None:
        for klass in _mro_of(type(value)):
            fn = _STR_OF.get(id(klass))
            if fn is not None:
                break
    if fn is None or not tz_trusted(value):
        return None
    text: str = fn(value)
    return text


def plain_str(value: object) -> str:
    text = plain_str_or_none(value)
    if text is None:
        raise UnsafeOperation(
            f"str() of a {type_name(value)} would call its __str__; convert one of its fields instead"
        )
    return text
