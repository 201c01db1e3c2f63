"""Facts about types, read without running application code (DESIGN rule 1): MRO, names and class
namespaces come through `type`'s own C descriptors, so a metaclass cannot intercept them; where a
type keeps instance state (its layout); and which built-in types keyhole trusts.

Types are looked up by ``id()``: hashing a class could run its metaclass's ``__hash__``.
"""

from __future__ import annotations

import collections
import datetime
import types
import weakref
from typing import Any, Final

from keyhole.agent.errors import UnsafeOperation
from keyhole.agent.reading.decimals import decimal_base
from keyhole.agent.reading.foreign_exceptions import from_application

MISSING: Final = object()

_mro_of: Any = type.__dict__["__mro__"].__get__
_namespace_of: Any = type.__dict__["__dict__"].__get__
_qualname_of: Any = type.__dict__["__qualname__"].__get__
_module_of: Any = type.__dict__["__module__"].__get__
_name_of: Any = type.__dict__["__name__"].__get__

_GETSET = types.GetSetDescriptorType
_MEMBER = types.MemberDescriptorType
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
SCALAR_IDS: Final = frozenset(map(id, SCALAR_TYPES))

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
BASE_BY_ID: Final = {id(t): t for t in (str, bytes, bytearray, *CONTAINER_BASES)}


def type_ids(*classes: type) -> frozenset[int]:
    """Identities of exact types: test ``id(type(x)) in ...`` because ``type(x) in (...)`` compares
    types with ==, which a metaclass can define."""
    return frozenset(map(id, classes))


INT_IDS: Final = type_ids(int, bool)
SEQUENCE_IDS: Final = type_ids(str, bytes, list, tuple)
_DESCRIPTOR_IDS: Final = type_ids(_GETSET, _MEMBER)


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
    except (AttributeError, TypeError) as exc:
        if from_application(exc):
            raise
        return "?"
    if type(qual) is not str:
        qual = "?"
    if type(module) is not str or module == "builtins":
        return qual
    return f"{module}.{qual}"


def is_subclass(cls: type, base: type) -> bool:
    return any(k is base for k in _mro_of(cls))


def is_class(obj: object) -> bool:
    """True when obj is a class (its type derives from `type`)."""
    return is_subclass(type(obj), type)


def is_module(obj: object) -> bool:
    return is_subclass(type(obj), types.ModuleType)


def builtin_base(cls: type) -> type | None:
    """The built-in container or string type cls derives from, if any."""
    base = BASE_BY_ID.get(id(cls))
    if base is not None:
        return base
    for klass in _mro_of(cls):
        base = BASE_BY_ID.get(id(klass))
        if base is not None:
            return base
    return None


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


def derives(value: object, base: type) -> bool:
    """isinstance(value, base) without consulting value.__class__ (which can run application code)."""
    return is_subclass(type(value), base)


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
