"""Reading application objects without running application code (DESIGN rule 1).

Every read the evaluator and the capture make goes through here. The rules:

- type facts (MRO, name, class namespace) are read through `type`'s own C descriptors, so a
  metaclass cannot intercept them;
- an attribute is read only from the instance's own storage (``__dict__``/``__slots__``) or as a
  plain class attribute; properties, other descriptors and ``__getattr__`` never run;
- an operation that dispatches to a dunder method (``==``, ``<``, ``hash``, ``len``, ``bool``,
  arithmetic) is performed only when the dunder that would run is a C slot of a built-in type;
- nothing is hashed or compared unless every object involved passes that test.

Types are looked up by ``id()``: hashing a class could run its metaclass's ``__hash__``.
"""

from __future__ import annotations

import builtins
import collections
import datetime
import functools
import operator
import sys
import types
import weakref
from collections.abc import Iterable, Iterator
from typing import Any, Final

from keyhole.agent.errors import EvalError
from keyhole.agent.reading.decimals import DECIMAL_TYPES, decimal_base, isolated

MISSING: Final = object()

_mro_of: Any = type.__dict__["__mro__"].__get__
_namespace_of: Any = type.__dict__["__dict__"].__get__
_qualname_of: Any = type.__dict__["__qualname__"].__get__
_module_of: Any = type.__dict__["__module__"].__get__
_name_of: Any = type.__dict__["__name__"].__get__
_module_dict: Any = vars(types.ModuleType)["__dict__"].__get__
_generic_getattr = object.__getattribute__

_WRAPPER = types.WrapperDescriptorType
_GETSET = types.GetSetDescriptorType
_MEMBER = types.MemberDescriptorType
_TUPLEGETTER = type(collections.namedtuple("_P", "x").__dict__["x"])
_NONE_TYPE = type(None)

# Scalars whose comparison, hashing and truth are C code with no hooks. (datetime and time are not
# here: an aware one calls its tzinfo's utcoffset(), which may be the application's; see tz_trusted.
# Decimal is not here either: its C methods use the thread's decimal context, see decimals.py.)
SCALAR_TYPES: tuple[type, ...] = (
    _NONE_TYPE,
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    datetime.date,
    datetime.timedelta,
)
_SCALAR_IDS: Final = frozenset(map(id, SCALAR_TYPES))
_DECIMAL_IDS: Final = frozenset(map(id, DECIMAL_TYPES))
_NUMBER_IDS: Final = frozenset(map(id, (bool, int, float, complex)))
_CLOCK_TYPES: Final = (datetime.datetime, datetime.time)
_TZINFO = {id(t): vars(t)["tzinfo"].__get__ for t in _CLOCK_TYPES}
_STR_IDS: Final = frozenset(map(id, (str, bytes)))

# Built-in containers and scalars: the bases whose C slots we trust.
CONTAINER_BASES: tuple[type, ...] = (
    list,
    tuple,
    dict,
    set,
    frozenset,
    collections.deque,
    bytearray,
    range,
)
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
# Types whose getset/member descriptors (C code) may be read: plain data, no side effects.
_READABLE_DESCRIPTOR_OWNER_IDS: Final = frozenset(
    map(
        id,
        (
            int,
            float,
            complex,
            bool,
            str,
            bytes,
            slice,
            range,
            *DECIMAL_TYPES,
            datetime.date,
            datetime.datetime,
            datetime.time,
            datetime.timedelta,
            datetime.timezone,
            *(t for t in vars(builtins).values() if isinstance(t, type) and issubclass(t, BaseException)),
        ),
    )
)
_BASE_BY_ID: Final = {id(t): t for t in (str, bytes, bytearray, *CONTAINER_BASES)}


def type_ids(*classes: type) -> frozenset[int]:
    """Identities of exact types: test ``id(type(x)) in ...`` because ``type(x) in (...)`` compares
    types with ==, which a metaclass can define."""
    return frozenset(map(id, classes))


INT_IDS: Final = type_ids(int, bool)
_CONTAINS_TEXT_IDS: Final = type_ids(str, bytes, int)
SEQUENCE_IDS: Final = type_ids(str, bytes, list, tuple)
_DESCRIPTOR_IDS: Final = type_ids(_GETSET, _MEMBER)


class UnsafeOperation(EvalError):
    """An operation would run application code, or is not defined for the object: the reason is for the user."""


class KeyMissing(UnsafeOperation):
    """A dict has no such key."""


def mro(cls: type) -> tuple[type, ...]:
    result: tuple[type, ...] = _mro_of(cls)
    return result


def class_lookup(cls: type, name: str) -> Any:
    """The raw class attribute `name` as attribute lookup would find it in the MRO, or MISSING."""
    for klass in _mro_of(cls):
        value = _namespace_of(klass).get(name, MISSING)
        if value is not MISSING:
            return value
    return MISSING


def class_name(cls: type) -> str:
    name = _name_of(cls)
    return name if type(name) is str else "?"


def qualified_name(cls: type) -> str:
    try:
        qual = _qualname_of(cls)
        module = _module_of(cls)
    except (AttributeError, TypeError):
        return "?"
    if type(qual) is not str:
        qual = "?"
    if type(module) is not str or module == "builtins":
        return qual
    return f"{module}.{qual}"


def _is_subclass(cls: type, base: type) -> bool:
    return any(k is base for k in _mro_of(cls))


def is_class(obj: object) -> bool:
    """True when obj is a class (its type derives from `type`)."""
    return _is_subclass(type(obj), type)


def is_module(obj: object) -> bool:
    return _is_subclass(type(obj), types.ModuleType)


def builtin_base(cls: type) -> type | None:
    """The built-in container or string type cls derives from, if any."""
    base = _BASE_BY_ID.get(id(cls))
    if base is not None:
        return base
    for klass in _mro_of(cls):
        base = _BASE_BY_ID.get(id(klass))
        if base is not None:
            return base
    return None


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
    return id(cls) in _SCALAR_IDS or all(dunder_is_c(cls, n) for n in names)


class TypeLayout:
    """Where a type keeps instance state (its ``__dict__`` descriptor and slots), its name, and how the
    capture shows it. Cached per type: none of this changes after a class is created."""

    __slots__ = ("__weakref__", "base", "cls_ref", "dict_descriptor", "kind", "qualname", "slots")

    def __init__(self, cls: type) -> None:
        self.cls_ref = weakref.ref(cls)  # the cache must not keep classes created at run time alive
        self.qualname = qualified_name(cls)
        self.base = builtin_base(cls)
        self.kind = _capture_kind(cls, self.base)
        descriptor = class_lookup(cls, "__dict__")
        self.dict_descriptor = descriptor if id(type(descriptor)) in _DESCRIPTOR_IDS else None
        slots: list[tuple[str, Any]] = []
        seen: set[str] = set()
        for klass in _mro_of(cls):
            namespace = _namespace_of(klass)
            declared = namespace.get("__slots__", ())
            if type(declared) is str:
                declared = (declared,)
            if type(declared) is not tuple and type(declared) is not list and type(declared) is not dict:
                continue
            for raw in declared:
                if type(raw) is not str or raw in ("__dict__", "__weakref__"):
                    continue
                name = raw
                if raw.startswith("__") and not raw.endswith("__"):
                    name = f"_{_qualname_of(klass).rsplit('.', 1)[-1].lstrip('_')}{raw}"
                member = namespace.get(name)
                if type(member) is _MEMBER and raw not in seen:
                    seen.add(raw)
                    slots.append((raw, member))
        self.slots = tuple(slots)


def _capture_kind(cls: type, base: type | None) -> str:
    classes = _mro_of(cls)
    names = {qualified_name(k) for k in classes}
    if "uuid.UUID" in names:
        return "uuid"
    if "enum.Enum" in names:
        return "enum"
    if any(k is datetime.timedelta for k in classes):
        return "timedelta"
    if any(k is datetime.date or k is datetime.time for k in classes):
        return "iso"
    if decimal_base(cls) is not None:
        return "decimal"
    if any(k is int or k is float or k is complex for k in classes) and not any(k is bool for k in classes):
        return "number"
    if base is not None:
        return "container"
    if any(k is type for k in classes):
        return "class"
    if any(k is types.ModuleType for k in classes):
        return "module"
    if any(k is BaseException for k in classes):
        return "exception"
    return "object"


_LAYOUTS: dict[int, TypeLayout] = {}
_MAX_LAYOUTS = 8192


def layout(cls: type) -> TypeLayout:
    entry = _LAYOUTS.get(id(cls))
    if entry is not None and entry.cls_ref() is cls:
        return entry
    if len(_LAYOUTS) >= _MAX_LAYOUTS:
        _LAYOUTS.clear()
    entry = TypeLayout(cls)
    _LAYOUTS[id(cls)] = entry
    return entry


def instance_dict(obj: object) -> dict[str, Any] | None:
    """The instance's own attribute dict, read through the C descriptor, or None."""
    cls = type(obj)
    if _is_subclass(cls, types.ModuleType):
        d = _module_dict(obj)
        return d if type(d) is dict else None
    descriptor = layout(cls).dict_descriptor
    if descriptor is None:
        return None
    try:
        d = descriptor.__get__(obj, cls)
    except (AttributeError, TypeError):
        return None
    return d if type(d) is dict else None


def instance_fields(obj: object) -> Iterator[tuple[str, Any]]:
    """(name, value) of every attribute stored on the instance: dict first, then slots."""
    d = instance_dict(obj)
    if d is not None:
        for key, value in dict.items(d):
            if type(key) is str:
                yield key, value
    for name, member in layout(type(obj)).slots:
        try:
            value = member.__get__(obj, type(obj))
        except AttributeError:
            continue
        yield name, value


def _has_get(value: object) -> bool:
    vt = type(value)
    if id(vt) in _SCALAR_IDS or id(vt) in _BASE_BY_ID:
        return False
    return class_lookup(vt, "__get__") is not MISSING


_METHOD_TYPE_IDS: Final = frozenset(
    map(id, (types.FunctionType, staticmethod, classmethod, types.BuiltinFunctionType, types.MethodDescriptorType))
)


def get_attribute(obj: Any, name: str) -> Any:
    """``obj.name`` read from the object's own storage; raise UnsafeOperation instead of running code."""
    cls = type(obj)
    if _is_subclass(cls, types.ModuleType):
        value = _module_dict(obj).get(name, MISSING)
        if value is MISSING:
            raise UnsafeOperation(f"module has no attribute {name!r}")
        return value
    if _is_subclass(cls, type):
        # A class: its namespace, raw. A method or property comes back as the object itself, not run.
        value = class_lookup(obj, name)
        if value is MISSING:
            raise UnsafeOperation(f"class {qualified_name(obj)} has no attribute {name!r}")
        return value
    found = class_lookup(cls, name)
    if found is MISSING or not _has_get(found):
        # No descriptor in the way: the generic lookup reads the instance storage or the plain class value.
        try:
            return _generic_getattr(obj, name)
        except AttributeError:
            raise UnsafeOperation(f"{layout(cls).qualname} object has no attribute {name!r}") from None
    ft = type(found)
    if ft is _MEMBER:
        # A slot or a C struct member: a raw read of stored data, never code.
        try:
            return found.__get__(obj, cls)
        except AttributeError:
            raise UnsafeOperation(f"attribute {name!r} is not set") from None
    if ft is _GETSET and id(found.__objclass__) in _READABLE_DESCRIPTOR_OWNER_IDS:
        return found.__get__(obj, cls)
    if ft is _TUPLEGETTER:
        return found.__get__(obj, cls)
    # A descriptor we will not run. A value stored on the instance under that name is still readable
    # (ORMs keep loaded column values there).
    d = instance_dict(obj)
    if d is not None:
        value = d.get(name, MISSING)
        if value is not MISSING:
            return value
    kind = "property" if _is_subclass(ft, property) else ("method" if id(ft) in _METHOD_TYPE_IDS else "descriptor")
    if kind == "method":
        raise UnsafeOperation(f"{name!r} is a method of {layout(cls).qualname}; keyhole does not call methods")
    raise UnsafeOperation(
        f"{layout(cls).qualname}.{name} is a {kind}; keyhole never runs {kind} code (read the field it stores instead)"
    )


# --- operations that would dispatch to dunders ---------------------------------------------------


def is_plain(value: Any, depth: int = 2, names: tuple[str, ...] = _HASH) -> bool:
    """True when comparing or hashing value runs C code only (containers are checked element by element)."""
    cls = type(value)
    if id(cls) in _SCALAR_IDS:
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
    if id(cls) in _SCALAR_IDS or id(cls) in _BASE_BY_ID or id(cls) in _DECIMAL_IDS:  # bool(Decimal) needs no context
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
    if kinds <= _SCALAR_IDS:
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
    except IndexError:
        raise UnsafeOperation(f"index {key!r} out of range") from None


def is_number(value: object) -> bool:
    cls = type(value)
    if id(cls) in _NUMBER_IDS:
        return True
    for base in (int, float, complex):
        if _is_subclass(cls, base):
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
    if (id(cls) in _SCALAR_IDS or id(cls) in _DECIMAL_IDS) and cls is not bytes:
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


def derives(value: object, base: type) -> bool:
    """isinstance(value, base) without consulting value.__class__ (which can run application code)."""
    return _is_subclass(type(value), base)


def type_name(value: object) -> str:
    return layout(type(value)).qualname


def isinstance_nominal(value: object, target: object) -> bool:
    """isinstance() by the MRO only: no __instancecheck__, no virtual subclasses (ABCs)."""
    targets = target if type(target) is tuple else (target,)
    classes = _mro_of(type(value))
    for t in targets:
        if type(t) is str:
            if any(_qualname_of(k) == t or qualified_name(k) == t for k in classes):
                return True
        elif is_class(t):
            if any(k is t for k in classes):
                return True
        else:
            raise UnsafeOperation("isinstance() needs a class, a type name string, or a tuple of them")
    return False


_STR_OF: dict[int, Any] = {
    id(str): str.__str__,
    id(int): int.__repr__,
    id(bool): int.__repr__,
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
