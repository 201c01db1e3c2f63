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
import sys
import types
from collections.abc import Iterable
from typing import Any

from keyhole.agent import safe_access as sa
from keyhole.protocol.limits import DEFAULT_CAPTURE, CaptureLimits
from keyhole.protocol.redaction import NAME_CLASS, TYPE_CLASS, RedactionRules, marker

# How much of a long string is kept for the redaction pass before the final cut.
TEXT_MARGIN = 1024
_MAX_SAFE_INT_BITS = 63


class LongText:
    """A string longer than the limit: a prefix for the redaction pass, and its real size."""

    __slots__ = ("limit", "size", "text")

    def __init__(self, text: str, size: int, limit: int) -> None:
        self.text = text
        self.size = size
        self.limit = limit


class NameFilter:
    """Memoised "is this name a secret?" for the capture's hot path; rules can be swapped at run time."""

    __slots__ = ("_cache", "reveal_secrets", "reveal_types", "rules")

    def __init__(self, rules: RedactionRules, reveal: tuple[str, ...] = ()) -> None:
        self.rules = rules
        self.reveal_secrets = NAME_CLASS in reveal
        self.reveal_types = TYPE_CLASS in reveal
        self._cache: dict[str, bool] = {}

    def is_secret(self, name: str) -> bool:
        if self.reveal_secrets:
            return False
        hit = self._cache.get(name)
        if hit is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            hit = self._cache[name] = self.rules.name_is_secret(name)
        return hit

    def type_is_secret(self, qualname: str) -> bool:
        return not self.reveal_types and self.rules.types != () and self.rules.type_is_secret(qualname)


_SCALAR_PASS = frozenset(map(id, (bool, type(None))))
_FUNCTION_TYPES = frozenset(
    map(id, (types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.BuiltinMethodType,
             types.MethodWrapperType, types.WrapperDescriptorType, types.MethodDescriptorType))
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
_ISO_TYPES = {
    id(datetime.datetime): datetime.datetime.isoformat,
    id(datetime.date): datetime.date.isoformat,
    id(datetime.time): datetime.time.isoformat,
}


class Capturer:
    """One capture: shares a size budget across everything captured for one event."""

    __slots__ = ("_active", "filter", "limits", "remaining")

    def __init__(self, names: NameFilter, limits: CaptureLimits = DEFAULT_CAPTURE) -> None:
        self.filter = names
        self.limits = limits
        self.remaining = limits.snapshot_bytes
        self._active: list[int] = []

    # --- entry points ---
    def fields(self, items: Iterable[tuple[str, Any]], depth: int = 0, skip_module_noise: bool = False) -> dict[str, Any]:
        """A name -> value mapping (locals, arguments, watch results), redacting secret names."""
        out: dict[str, Any] = {}
        limit = self.limits.fields
        more = 0
        for name, value in items:
            if skip_module_noise and (
                (name.startswith("__") and name.endswith("__"))
                or id(type(value)) in _FUNCTION_TYPES
                or sa.is_module(value)
                or sa.is_class(value)
            ):
                continue
            if len(out) >= limit or self.remaining <= 0:
                more += 1
                continue
            key = "@" + name if name.startswith("@") else name
            self.remaining -= len(name) + 4
            out[key] = marker(NAME_CLASS) if self.filter.is_secret(name) else self.value(value, depth)
        if more:
            out["@more"] = more
        return out

    def value(self, value: Any, depth: int = 0) -> Any:
        cls = type(value)
        tid = id(cls)
        if tid in _SCALAR_PASS:
            self.remaining -= 5
            return value
        if cls is str:
            n = len(value)
            self.remaining -= min(n, self.limits.string) + 2
            if n <= self.limits.string:
                return value
            return LongText(value[:TEXT_MARGIN], n, self.limits.string)
        if cls is int:
            self.remaining -= 8
            if value.bit_length() <= _MAX_SAFE_INT_BITS:
                return value
            return {"@type": "int", "@bits": value.bit_length()}
        if cls is float:
            self.remaining -= 8
            if value == value and value not in (float("inf"), float("-inf")):
                return value
            return {"@type": "float", "@value": float.__repr__(value)}
        if self.remaining <= 0:
            return {"@truncated": "size"}
        try:
            return self._complex(value, cls, depth)
        except Exception as exc:  # a capture must never fail the event: say what could not be read
            return {"@type": sa.type_name(value), "@error": f"{type(exc).__name__}"}

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
        if tid in _ISO_TYPES:
            self.remaining -= 32
            return {"@type": sa.type_name(value), "@value": _ISO_TYPES[tid](value)}
        layout = sa.layout(cls)
        qualname = layout.qualname
        if self.filter.type_is_secret(qualname):
            self.remaining -= 30
            return {"@redacted": TYPE_CLASS, "@type": qualname}
        base = sa.builtin_base(cls)
        if base is None and sa.is_class(value):
            self.remaining -= 40
            return {"@type": "class", "@name": sa.qualified_name(value)}
        if base is None and sa.is_module(value):
            name = sa.instance_dict(value) or {}
            self.remaining -= 40
            return {"@type": "module", "@name": name.get("__name__", "?")}
        special = _special(value, cls, layout)
        if special is not None:
            self.remaining -= 40
            return special
        if id(value) in self._active:
            return {"@type": qualname, "@cycle": True}
        if depth >= self.limits.depth:
            self.remaining -= len(qualname) + 20
            out: dict[str, Any] = {"@type": qualname, "@truncated": "depth"}
            if base is not None:
                out["@size"] = sa.size(value)
            return out
        self._active.append(id(value))
        try:
            if base is not None:
                return self._container(value, base, qualname, depth)
            return self._object(value, qualname, depth)
        finally:
            self._active.pop()

    def _container(self, value: Any, base: type, qualname: str, depth: int) -> Any:
        limit = self.limits.items
        if base is str:
            n = len(value)
            self.remaining -= min(n, self.limits.string) + 20
            text = str.__str__(value)
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
        total = sa.size(value)
        for item in itertools.islice(sa.iterate(value), limit):
            if self.remaining <= 0:
                break
            self.remaining -= 2
            items.append(self.value(item, depth + 1))
        more = total - len(items)
        if qualname == "list":
            if more:
                items.append({"@more": more})
            return items
        out: dict[str, Any] = {"@type": qualname, "@items": items}
        if more:
            out["@more"] = more
        return out

    def _dict(self, value: Any, qualname: str, depth: int) -> Any:
        total = dict.__len__(value)
        head = list(itertools.islice(dict.items(value), self.limits.items))
        is_secret = self.filter.is_secret
        if all(type(k) is str for k, _ in head):
            out: dict[str, Any] = {} if qualname == "dict" else {"@type": qualname}
            shown = 0
            for key, item in head:
                if self.remaining <= 0:
                    break
                shown += 1
                self.remaining -= len(key) + 4
                name = "@" + key if key.startswith("@") else key
                out[name] = marker(NAME_CLASS) if is_secret(key) else self.value(item, depth + 1)
            if total > shown:
                out["@more"] = total - shown
            return out
        entries: list[list[Any]] = []
        for key, item in head:
            if self.remaining <= 0:
                break
            self.remaining -= 4
            secret = type(key) is str and is_secret(key)
            entries.append([self.value(key, depth + 1), marker(NAME_CLASS) if secret else self.value(item, depth + 1)])
        result: dict[str, Any] = {"@type": qualname, "@entries": entries}
        if total > len(entries):
            result["@more"] = total - len(entries)
        return result

    def _object(self, value: Any, qualname: str, depth: int) -> Any:
        self.remaining -= len(qualname) + 12
        out: dict[str, Any] = {"@type": qualname}
        if isinstance(value, BaseException):
            out["args"] = self.value(BaseException.__dict__["args"].__get__(value), depth + 1)
        fields = self.fields(sa.instance_fields(value), depth + 1)
        out.update(fields)
        return out


def _callable_name(value: Any) -> str:
    if type(value) is types.MethodType:
        value = types.MethodType.__dict__["__func__"].__get__(value)
        if type(value) is not types.FunctionType:
            return "?"
    # Every type reaching here is a C type whose name attributes are plain getsets.
    name = getattr(value, "__qualname__", None)
    return name if type(name) is str else "?"


def _special(value: Any, cls: type, layout: sa.TypeLayout) -> dict[str, Any] | None:
    """Stdlib value types shown by value, read from their own storage."""
    mro = sa.mro(cls)
    uuid_mod = sys.modules.get("uuid")
    if uuid_mod is not None and any(k is uuid_mod.UUID for k in mro):
        for name, member in layout.slots:
            if name == "int":
                h = f"{member.__get__(value, cls):032x}"
                return {"@type": layout.qualname, "@value": f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"}
    enum_mod = sys.modules.get("enum")
    if enum_mod is not None and any(k is enum_mod.Enum for k in mro):
        d = sa.instance_dict(value) or {}
        name = d.get("_name_")
        return {"@type": layout.qualname, "@value": name if type(name) is str else "?"}
    if any(k is datetime.timedelta for k in mro):
        return {"@type": layout.qualname, "@value": datetime.timedelta.total_seconds(value)}
    for klass in mro:
        if sa.qualified_name(klass) == "decimal.Decimal" and id(klass) in _DECIMAL_IDS:
            return {"@type": layout.qualname, "@value": klass.__str__(value)}
    return None


try:
    import _decimal

    _DECIMAL_IDS = frozenset({id(_decimal.Decimal)})
except ImportError:  # pragma: no cover
    _DECIMAL_IDS = frozenset()
