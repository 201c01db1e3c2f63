"""Formatting values into log lines without calling __str__, __repr__ or __format__ of application types."""

from __future__ import annotations

from typing import Any

from keyhole.agent.errors import EvalError
from keyhole.agent.reading import decimals, safe_operations, safe_types
from keyhole.agent.reading.capture import Capturer, LongText, NameFilter
from keyhole.agent.reading.foreign_exceptions import from_application
from keyhole.protocol.limits import CaptureLimits
from keyhole.protocol.redaction import cut_text, redact_text

INLINE_LIMITS = CaptureLimits(depth=2, items=10, string=255, fields=10, snapshot_bytes=2048)


# Exact built-in scalars, by id (hashing a type could run its metaclass's __hash__).
def _none(value: None) -> str:
    return "None"


_FAST_STR: dict[int, Any] = {id(int): safe_operations.int_text, id(float): float.__repr__, id(type(None)): _none}
_FAST_SPEC_IDS = frozenset({id(int), id(float), id(str)})


def format_value(value: Any, spec: str, names: NameFilter) -> str:
    cls = type(value)
    if spec:
        decimal_type = decimals.decimal_base(cls)
        if decimal_type is not None:
            try:
                decimal_text: str = decimals.isolated(decimal_type.__format__, value, spec)
            except (ValueError, TypeError, ArithmeticError) as exc:
                if from_application(exc):
                    raise
                raise EvalError(f"format spec {spec!r} does not fit a {safe_types.type_name(value)}: {exc}") from None
            return decimal_text
        if id(cls) in _FAST_SPEC_IDS or (
            (safe_operations.is_number(value) or safe_operations.is_text(value))
            and safe_operations.dunder_is_c(cls, "__format__")
        ):
            try:
                formatted: str = format(value, spec)
            except (ValueError, TypeError) as exc:
                if from_application(exc):
                    raise
                raise EvalError(f"format spec {spec!r} does not fit a {safe_types.type_name(value)}: {exc}") from None
            return formatted
        raise EvalError(f"format spec {spec!r} applies to numbers and strings only (got {safe_types.type_name(value)})")
    if cls is str:
        result: str = value
        return result
    if cls is bool:
        return "True" if value else "False"
    fast = _FAST_STR.get(id(cls))
    if fast is not None:
        text: str = fast(value)
        return text
    if safe_operations.is_plain(value, 0) and safe_types.builtin_base(cls) in (None, str, bytes):
        plain = safe_operations.plain_str_or_none(value)
        if plain is not None:
            return plain
    return render_inline(Capturer(names, INLINE_LIMITS).value(value))


def render_inline(value: Any, top: bool = True) -> str:
    """A captured value as one short line: Order(id=7, total=99.5), [1, 2], {'k': 'v'}."""
    if isinstance(value, LongText):
        # Redact before cutting (the agent's thread redacts the line again, and cannot see a secret
        # this cut would split).
        text = cut_text(redact_text(value.text)[0], value.limit) + "..."
        return text if top else repr(text)
    if isinstance(value, str):
        return value if top else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_more(v) for v in value) + "]"
    if isinstance(value, dict):
        if "@redacted" in value:
            return f"[redacted:{value['@redacted']}]"
        type_name = value.get("@type")
        if "@value" in value:
            return render_inline(value["@value"], top)
        if "@name" in value:
            return f"<{type_name} {value['@name']}>"
        if "@items" in value:
            inner = ", ".join(render_inline(v, False) for v in value["@items"])
            more = ", ..." if value.get("@more") else ""
            return f"{type_name}({inner}{more})"
        if "@entries" in value:
            inner = ", ".join(f"{render_inline(k, False)}: {render_inline(v, False)}" for k, v in value["@entries"])
            return "{" + inner + (", ..." if value.get("@more") else "") + "}"
        fields = [
            (k[1:] if k.startswith("@@") else k, v)
            for k, v in value.items()
            if not k.startswith("@") or k.startswith("@@")
        ]
        more = ", ..." if value.get("@more") or value.get("@truncated") else ""
        if type_name is None:
            return "{" + ", ".join(f"{k!r}: {render_inline(v, False)}" for k, v in fields) + more + "}"
        return f"{type_name}(" + ", ".join(f"{k}={render_inline(v, False)}" for k, v in fields) + more + ")"
    return repr(value)


def _more(value: Any) -> str:
    if isinstance(value, dict) and "@more" in value and len(value) == 1:
        return f"... {value['@more']} more"
    return render_inline(value, False)
