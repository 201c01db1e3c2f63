"""Reading an attribute without running application code (DESIGN rule 1): only from the instance's
own storage (``__dict__``/``__slots__``) or as a plain class attribute; properties, other descriptors
and ``__getattr__`` never run.
"""

from __future__ import annotations

import builtins
import collections
import datetime
import types
from collections.abc import Iterator
from typing import Any, Final

from keyhole.agent.errors import UnsafeOperation
from keyhole.agent.reading.decimals import DECIMAL_TYPES
from keyhole.agent.reading.foreign_exceptions import from_application
from keyhole.agent.reading.safe_types import (
    BASE_BY_ID,
    MISSING,
    SCALAR_IDS,
    class_lookup,
    is_subclass,
    layout,
    qualified_name,
)

_module_dict: Any = vars(types.ModuleType)["__dict__"].__get__
_generic_getattr = object.__getattribute__

_GETSET = types.GetSetDescriptorType
_MEMBER = types.MemberDescriptorType
_TUPLEGETTER = type(collections.namedtuple("_P", "x").__dict__["x"])

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


def instance_dict(obj: object) -> dict[str, Any] | None:
    """The instance's own attribute dict, read through the C descriptor, or None."""
    cls = type(obj)
    if is_subclass(cls, types.ModuleType):
        d = _module_dict(obj)
        return d if type(d) is dict else None
    descriptor = layout(cls).dict_descriptor
    if descriptor is None:
        return None
    try:
        d = descriptor.__get__(obj, cls)
    except (AttributeError, TypeError) as exc:
        if from_application(exc):
            raise
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
        except AttributeError as exc:
            if from_application(exc):
                raise
            continue
        yield name, value


def _has_get(value: object) -> bool:
    vt = type(value)
    if id(vt) in SCALAR_IDS or id(vt) in BASE_BY_ID:
        return False
    return class_lookup(vt, "__get__") is not MISSING


_METHOD_TYPE_IDS: Final = frozenset(
    map(id, (types.FunctionType, staticmethod, classmethod, types.BuiltinFunctionType, types.MethodDescriptorType))
)


def get_attribute(obj: Any, name: str) -> Any:
    """``obj.name`` read from the object's own storage; raise UnsafeOperation instead of running code."""
    cls = type(obj)
    if is_subclass(cls, types.ModuleType):
        value = _module_dict(obj).get(name, MISSING)
        if value is MISSING:
            raise UnsafeOperation(f"module has no attribute {name!r}")
        return value
    if is_subclass(cls, type):
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
        except AttributeError as exc:
            if from_application(exc):
                raise
            raise UnsafeOperation(f"{layout(cls).qualname} object has no attribute {name!r}") from None
    ft = type(found)
    if ft is _MEMBER:
        # A slot or a C struct member: a raw read of stored data, never code.
        try:
            return found.__get__(obj, cls)
        except AttributeError as exc:
            if from_application(exc):
                raise
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
    kind = "property" if is_subclass(ft, property) else ("method" if id(ft) in _METHOD_TYPE_IDS else "descriptor")
    if kind == "method":
        raise UnsafeOperation(f"{name!r} is a method of {layout(cls).qualname}; keyhole does not call methods")
    raise UnsafeOperation(
        f"{layout(cls).qualname}.{name} is a {kind}; keyhole never runs {kind} code (read the field it stores instead)"
    )
