"""The bounded serializer: application values into plain, JSON-ready values, without running their code.

It runs on the application thread at a probe hit, so it copies only what the limits allow (depth,
items, fields, string length, total size) and defers the expensive work: long strings are kept as
a prefix and cut to the limit on the agent's thread, after value redaction has seen enough of them
to recognise a secret that crosses the cut.

Representation: JSON scalars, lists and str-keyed objects stand for themselves. Everything else is an
object with an ``@type`` key; keys beginning with '@' are keyhole's (an application key that begins
with '@' is written with one more '@'). Redacted values are ``{"@redacted": CLASS}``.
"""

from __future__ import annotations

import datetime
import itertools
import types
from collections.abc import Iterable
from typing import Any

from keyhole.agent.reading import decimals, safe_attributes, safe_operations, safe_types
from keyhole.agent.reading.foreign_exceptions import from_application
from keyhole.protocol.limits import DEFAULT_CAPTURE, CaptureLimits
from keyhole.protocol.redaction import MARKER_KEY as MARKER
from keyhole.protocol.redaction import NAME_CLASS, TYPE_CLASS, RedactionRules

# How much of a long string is kept for the redaction pass before the final cut.
TEXT_MARGIN = 1024
_INT_BOUND = 2**63
_INT_FLOOR = -(2**63)


class LongText:
    """A string longer than the limit: a prefix for the redaction pass, and its real size."""

    __slots__ = ("limit", "size", "text")

    def __init__(self, text: str, size: int, limit: int) -> None:
        self.text = text
        self.size = size
        self.limit = limit


class NameFilter:
    """Memoised "is this name a secret?" for the capture's hot path; rules can be swapped at run time."""

    __slots__ = ("cache", "check_types", "reveal_secrets", "rules")

    def __init__(self, rules: RedactionRules, reveal: tuple[str, ...] = ()) -> None:
        self.rules = rules
        self.reveal_secrets = NAME_CLASS in reveal
        self.check_types = TYPE_CLASS not in reveal and bool(rules.types)
        self.cache: dict[str, bool] = {}

    def is_secret(self, name: str) -> bool:
        hit = self.cache.get(name)
        if hit is None:
            if len(self.cache) > 4096:
                self.cache.clear()
            hit = self.cache[name] = not self.reveal_secrets and self.rules.name_is_secret(name)
        return hit

    def type_is_secret(self, qualname: str) -> bool:
        return self.check_types and self.rules.type_is_secret(qualname)


_FUNCTION_TYPES = frozenset(
    map(
        id,
        (
            types.FunctionType,
            types.BuiltinFunctionType,
            types.MethodType,
            types.BuiltinMethodType,
            types.MethodWrapperType,
            types.WrapperDescriptorType,
            types.MethodDescriptorType,
        ),
    )
)
_OPAQUE_TYPES = {
    id(types.FrameType): "frame",
    id(types.CodeType): "code",
    id(types.TracebackType): "traceback",
    id(types.GeneratorType): "generator",
    id(types.CoroutineType): "coroutine",
    id(types.AsyncGeneratorType): "async_generator",
    id(types.CellType): "cell",
    id(types.MappingProxyType): "mappingproxy",
}


_NOISE_KINDS = frozenset({"class", "module"})
_CAPTURED_KINDS = frozenset({"container", "object", "exception"})


class Capturer:
    """One capture: shares a size budget across everything captured for one event."""

    __slots__ = ("_active", "_cache", "_fields", "_string", "filter", "limits", "remaining")

    def __init__(self, names: NameFilter, limits: CaptureLimits = DEFAULT_CAPTURE) -> None:
        self.filter = names
        self.limits = limits
        self.remaining = limits.snapshot_bytes
        self._active: list[int] = []
        self._cache = names.cache
        self._fields = limits.fields
        self._string = limits.string

    # --- entry points ---
    def fields(
        self,
        items: Iterable[tuple[str, Any]],
        depth: int = 0,
        skip_module_noise: bool = False,
        identifiers: bool = False,
    ) -> dict[str, Any]:
        """A name -> value mapping (locals, arguments, attributes), redacting secret names.

        This loop runs for every captured field, so it is written for speed: scalars are handled
        inline and the size budget is kept in a local. `identifiers` says the names are Python
        identifiers (locals), which cannot begin with '@'.
        """
        out: dict[str, Any] = {}
        limit = self._fields
        string_limit = self._string
        cache_get = self._cache.get
        remaining = self.remaining
        count = 0
        more = 0
        for name, value in items:
            if not identifiers and type(name) is not str:
                continue  # a mapping's non-string key: hashing or slicing it could run its code
            if skip_module_noise and _is_noise(name, value):
                continue
            if count >= limit or remaining <= 0:
                more += 1
                continue
            count += 1
            secret = cache_get(name)
            if secret is None:
                secret = self.filter.is_secret(name)
            key = "@" + name if not identifiers and name[:1] == "@" else name
            if secret:
                remaining -= 24
                out[key] = {MARKER: NAME_CLASS}
                continue
            cls = type(value)
            if cls is int:
                if _INT_FLOOR < value < _INT_BOUND:
                    remaining -= 12
                    out[key] = value
                    continue
            elif cls is str:
                if len(value) <= string_limit:
                    remaining -= len(value) + 6
                    out[key] = value
                    continue
            elif cls is bool or value is None:
                remaining -= 8
                out[key] = value
                continue
            self.remaining = remaining - 4
            out[key] = self.value(value, depth)
            remaining = self.remaining
        self.remaining = remaining
        if more:
            out["@more"] = more
        return out

    def value(self, value: Any, depth: int = 0) -> Any:
        cls = type(value)
        if cls is str:
            n = len(value)
            self.remaining -= (n if n < self._string else self._string) + 2
            if n <= self._string:
                return value
            return LongText(value[:TEXT_MARGIN], n, self._string)
        if cls is int:
            self.remaining -= 8
            if _INT_FLOOR < value < _INT_BOUND:
                return value
            return {"@type": "int", "@bits": value.bit_length()}
        if cls is bool or value is None:
            self.remaining -= 5
            return value
        if cls is float:
            self.remaining -= 8
            if value - value == 0.0:  # finite: inf - inf and nan - nan are nan
                return value
            return {"@type": "float", "@value": float.__repr__(value)}
        if self.remaining <= 0:
            return {"@truncated": "size"}
        active = len(self._active)
        try:
            if cls is list or cls is tuple:
                return self._sequence(value, cls is list, depth)
            if cls is dict:
                return self._dict(value, "dict", depth)
            return self._complex(value, cls, depth)
        except RecursionError:
            raise  # no stack room: the probe skips the hit
        except Exception as exc:  # a capture must never fail the event: say what could not be read
            if from_application(exc):
                raise
            del self._active[active:]
            return {"@type": safe_types.type_name(value), "@error": f"{type(exc).__name__}"}

    def _sequence(self, value: list[Any] | tuple[Any, ...], is_list: bool, depth: int) -> Any:
        """Exact lists and tuples, the commonest containers. (value() restores _active on errors.)"""
        if depth >= self.limits.depth:
            self.remaining -= 30
            return {"@type": "list" if is_list else "tuple", "@truncated": "depth", "@size": len(value)}
        key = id(value)
        active = self._active
        if key in active:
            return {"@type": "list" if is_list else "tuple", "@cycle": True}
        active.append(key)
        items: list[Any] = []
        child = depth + 1
        string_limit = self._string
        for item in value[: self.limits.items]:
            if self.remaining <= 0:
                break
            cls = type(item)
            if cls is int and _INT_FLOOR < item < _INT_BOUND:
                self.remaining -= 10
                items.append(item)
            elif cls is str and len(item) <= string_limit:
                self.remaining -= len(item) + 4
                items.append(item)
            else:
                self.remaining -= 2
                items.append(self.value(item, child))
        active.pop()
        more = len(value) - len(items)
        if is_list:
            if more:
                items.append({"@more": more})
            return items
        out: dict[str, Any] = {"@type": "tuple", "@items": items}
        if more:
            out["@more"] = more
        return out

    # --- the rest ---
    def _complex(self, value: Any, cls: type, depth: int) -> Any:
        tid = id(cls)
        opaque = _OPAQUE_TYPES.get(tid)
        if opaque is not None:
            self.remaining -= 20
            return {"@type": opaque}
        if tid in _FUNCTION_TYPES:
            self.remaining -= 40
            return {"@type": "function", "@name": _callable_name(value)}
        layout = safe_types.layout(cls)
        qualname = layout.qualname
        kind = layout.kind
        if self.filter.check_types and self.filter.type_is_secret(qualname):
            self.remaining -= 30
            return {"@redacted": TYPE_CLASS, "@type": qualname}
        if kind not in _CAPTURED_KINDS:
            self.remaining -= 40
            return _scalar_like(value, cls, layout)
        if id(value) in self._active:
            return {"@type": qualname, "@cycle": True}
        if depth >= self.limits.depth:
            self.remaining -= len(qualname) + 20
            out: dict[str, Any] = {"@type": qualname, "@truncated": "depth"}
            if kind == "container":
                out["@size"] = safe_operations.size(value)
            return out
        self._active.append(id(value))
        try:
            if kind == "container":
                assert layout.base is not None
                return self._container(value, layout.base, qualname, depth)
            return self._object(value, qualname, depth, kind == "exception")
        finally:
            self._active.pop()

    def _container(self, value: Any, base: type, qualname: str, depth: int) -> Any:
        limit = self.limits.items
        if base is str:
            text = str.__str__(value)  # the string data itself, as an exact str
            n = len(text)
            self.remaining -= min(n, self.limits.string) + 20
            shown: Any = text if n <= self.limits.string else LongText(text[:TEXT_MARGIN], n, self.limits.string)
            return {"@type": qualname, "@value": shown}
        if base is bytes or base is bytearray:
            n = base.__len__(value)
            self.remaining -= min(n, self.limits.string) + 20
            decoded = bytes(base.__getitem__(value, slice(0, TEXT_MARGIN))).decode("utf-8", "backslashreplace")
            shown = decoded if n <= self.limits.string else LongText(decoded, n, self.limits.string)
            return {"@type": qualname, "@value": shown, "@size": n}
        if base is dict:
            return self._dict(value, qualname, depth)
        if base is range:
            return {"@type": "range", "@value": [value.start, value.stop, value.step]}
        items: list[Any] = []
        total = safe_operations.size(value)
        for item in itertools.islice(safe_operations.iterate(value), limit):
            if self.remaining <= 0:
                break
            self.remaining -= 2
            items.append(self.value(item, depth + 1))
        more = total - len(items)
        out: dict[str, Any] = {"@type": qualname, "@items": items}
        if more:
            out["@more"] = more
        return out

    def _dict(self, value: Any, qualname: str, depth: int) -> Any:
        total = dict.__len__(value)
        limit = self.limits.items
        secret = self.filter.is_secret
        out: dict[str, Any] = {} if qualname == "dict" else {"@type": qualname}
        shown = 0
        for key, item in dict.items(value):
            if shown >= limit or self.remaining <= 0:
                break
            if type(key) is not str:
                return self._entries(value, qualname, depth, total)
            shown += 1
            self.remaining -= len(key) + 4
            name = "@" + key if key[:1] == "@" else key
            if secret(key):
                out[name] = {MARKER: NAME_CLASS}
            elif type(item) is int and _INT_FLOOR < item < _INT_BOUND:
                out[name] = item
            else:
                out[name] = self.value(item, depth + 1)
        if total > shown:
            out["@more"] = total - shown
        return out

    def _entries(self, value: Any, qualname: str, depth: int, total: int) -> Any:
        """A dict with keys that are not strings: [key, value] pairs."""
        entries: list[list[Any]] = []
        for key, item in itertools.islice(dict.items(value), self.limits.items):
            if self.remaining <= 0:
                break
            self.remaining -= 4
            hidden = type(key) is str and self.filter.is_secret(key)
            entries.append(
                [self.value(key, depth + 1), {MARKER: NAME_CLASS} if hidden else self.value(item, depth + 1)]
            )
        result: dict[str, Any] = {"@type": qualname, "@entries": entries}
        if total > len(entries):
            result["@more"] = total - len(entries)
        return result

    def _object(self, value: Any, qualname: str, depth: int, exception: bool) -> Any:
        self.remaining -= len(qualname) + 12
        out: dict[str, Any] = {"@type": qualname}
        if exception:
            out["args"] = self.value(BaseException.__dict__["args"].__get__(value), depth + 1)
        fields = self.fields(safe_attributes.instance_fields(value), depth + 1)
        out.update(fields)
        return out


def _callable_name(value: Any) -> str:
    """A function's or method's name from C getsets only. (A bound built-in method's __qualname__
    would ask its receiver's class, and through it a metaclass, for its own __qualname__.)"""
    cls = type(value)
    if cls is types.MethodType:
        value = types.MethodType.__dict__["__func__"].__get__(value)
        cls = type(value)
    if cls is types.FunctionType:
        name = types.FunctionType.__dict__["__qualname__"].__get__(value)
    else:
        getter = vars(cls).get("__name__")
        name = getter.__get__(value) if type(getter) is types.GetSetDescriptorType else None
    return name if type(name) is str else "?"


def _scalar_like(value: Any, cls: type, layout: safe_types.TypeLayout) -> dict[str, Any]:
    """Values shown whole, read from their own storage: classes, modules, UUIDs, enums, dates, decimals."""
    kind = layout.kind
    if kind == "class":
        return {"@type": "class", "@name": safe_types.qualified_name(value)}
    if kind == "module":
        namespace = safe_attributes.instance_dict(value) or {}
        name = namespace.get("__name__")
        return {"@type": "module", "@name": name if type(name) is str else "?"}
    if kind == "uuid":
        for name, member in layout.slots:
            number = member.__get__(value, cls) if name == "int" else None
            if type(number) is int:
                h = f"{number:032x}"
                return {"@type": layout.qualname, "@value": f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"}
    if kind == "enum":
        d = safe_attributes.instance_dict(value) or {}
        member = d.get("_name_")
        return {"@type": layout.qualname, "@value": member if type(member) is str else "?"}
    if kind == "timedelta":
        return {"@type": layout.qualname, "@value": datetime.timedelta.total_seconds(value)}
    if kind == "iso":
        return {"@type": layout.qualname, "@value": _iso(value, cls)}
    if kind == "decimal":
        return {"@type": layout.qualname, "@value": decimals.text(value)}
    if kind == "number":
        for klass in safe_types.mro(cls):
            if klass is int or klass is float or klass is complex:
                number_type: Any = klass
                return {"@type": layout.qualname, "@value": number_type.__repr__(value)}
    return {"@type": layout.qualname}


def _iso(value: Any, cls: type) -> str:
    """ISO 8601 text of a date, datetime or time. An aware value whose tzinfo is application code is
    written from its fields, with the tzinfo's type name: isoformat() would call its utcoffset()."""
    mro = safe_types.mro(cls)
    if any(k is datetime.datetime for k in mro):
        base: Any = datetime.datetime
    elif any(k is datetime.time for k in mro):
        base = datetime.time
    else:
        return str(datetime.date.isoformat(value))
    if safe_operations.tz_trusted(value):
        return str(base.isoformat(value))
    field = {name: vars(base)[name].__get__(value) for name in ("hour", "minute", "second", "microsecond")}
    text = f"{field['hour']:02d}:{field['minute']:02d}:{field['second']:02d}.{field['microsecond']:06d}"
    if base is datetime.datetime:
        text = f"{datetime.date.isoformat(value)}T{text}"
    zone = base.__dict__["tzinfo"].__get__(value)
    return f"{text} ({safe_types.type_name(zone)})"


def _is_noise(name: str, value: Any) -> bool:
    """A module-level name that is an import, a function or a class, not data."""
    if name[:2] == "__" and name[-2:] == "__":
        return True
    if id(type(value)) in _FUNCTION_TYPES:
        return True
    return safe_types.layout(type(value)).kind in _NOISE_KINDS
