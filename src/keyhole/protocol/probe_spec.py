"""Probe specifications: what a user asks the agent to observe, validated before it goes anywhere.

A probe file (JSON or YAML, read by the CLI) holds ``{"probes": [...], "redaction": {...}}``; each
probe is one object. Validation is strict: an unknown kind, an unknown field, a field that does not
apply to the kind, a wrong type or an unsafe expression is refused with a one-line reason.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from keyhole.protocol.durations import parse_duration
from keyhole.protocol.errors import SpecError
from keyhole.protocol.expression import (
    CheckedExpression,
    TemplatePart,
    check_expression,
    parse_template,
)
from keyhole.protocol.limits import (
    DEFAULT_MAX_HITS,
    DEFAULT_RATE,
    DEFAULT_TTL_SECONDS,
    MAX_HITS_CEILING,
    MAX_RATE,
    MAX_TTL_SECONDS,
)
from keyhole.protocol.redaction import RedactionRules, validate_reveal

KINDS = ("snapshot", "log", "metric", "function", "exception", "stacks")
LINE_KINDS = frozenset({"snapshot", "log", "metric"})
FUNCTION_KINDS = frozenset({"function", "exception"})

_COMMON = frozenset({"id", "kind", "max_hits", "rate", "ttl", "reveal"})
_FIELDS: dict[str, frozenset[str]] = {
    "snapshot": _COMMON | {"file", "line", "condition", "watch"},
    "log": _COMMON | {"file", "line", "condition", "template"},
    "metric": _COMMON | {"file", "line", "condition", "value"},
    "function": _COMMON | {"function", "condition"},
    "exception": _COMMON | {"function", "exception", "condition"},
    "stacks": _COMMON | {"after", "every"},
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "snapshot": ("file", "line"),
    "log": ("file", "line", "template"),
    "metric": ("file", "line"),
    "function": ("function",),
    "exception": ("function",),
    "stacks": (),
}
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_QUALPART = r"(?:[A-Za-z_][A-Za-z0-9_]*|<locals>)"
_FUNCTION = re.compile(rf"({_DOTTED}):({_QUALPART}(?:\.{_QUALPART})*)")
_EXCEPTION = re.compile(_DOTTED)
MAX_WATCH = 16


@dataclass(frozen=True)
class ProbeSpec:
    """One validated probe. Limits that were not given are filled with the defaults of the kind."""

    id: str
    kind: str
    file: str | None = None
    line: int | None = None
    function: str | None = None
    exception: str | None = None
    condition: str | None = None
    watch: tuple[str, ...] = ()
    template: str | None = None
    value: str | None = None
    max_hits: int | None = None
    rate: float | None = None
    ttl: float = DEFAULT_TTL_SECONDS
    reveal: tuple[str, ...] = ()
    after: float | None = None
    every: float | None = None
    # Checked forms of the expressions, for the agent's evaluator; not part of the wire form.
    checked_condition: CheckedExpression | None = field(default=None, compare=False, repr=False)
    checked_watch: tuple[CheckedExpression, ...] = field(default=(), compare=False, repr=False)
    checked_template: tuple[TemplatePart, ...] = field(default=(), compare=False, repr=False)
    checked_value: CheckedExpression | None = field(default=None, compare=False, repr=False)

    @property
    def module(self) -> str | None:
        return self.function.split(":", 1)[0] if self.function else None

    @property
    def qualname(self) -> str | None:
        return self.function.split(":", 1)[1] if self.function else None

    def to_dict(self) -> dict[str, Any]:
        """The wire form: only fields that were set, as the user would write them."""
        out: dict[str, Any] = {"id": self.id, "kind": self.kind}
        for name in (
            "file",
            "line",
            "function",
            "exception",
            "condition",
            "template",
            "value",
            "max_hits",
            "rate",
            "after",
            "every",
        ):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.watch:
            out["watch"] = list(self.watch)
        if self.reveal:
            out["reveal"] = list(self.reveal)
        out["ttl"] = self.ttl
        return out

    @classmethod
    def from_dict(cls, data: object, rules: RedactionRules | None = None) -> ProbeSpec:
        """Validate one probe object; raise SpecError naming the probe, the field and the fix."""
        if not isinstance(data, Mapping):
            raise SpecError(f"a probe must be an object (got {type(data).__name__})")
        raw_id = data.get("id")
        label = f"probe {raw_id!r}" if isinstance(raw_id, str) else "probe"
        try:
            return cls._from_mapping(data, rules or RedactionRules())
        except SpecError as exc:
            raise SpecError(f"{label}: {exc}") from None

    @classmethod
    def _from_mapping(cls, data: Mapping[Any, Any], rules: RedactionRules) -> ProbeSpec:
        for key in data:
            if not isinstance(key, str):
                raise SpecError(f"field names must be strings (got {key!r})")
        probe_id = data.get("id")
        if probe_id is None:
            raise SpecError("missing field 'id' (a short name such as p1)")
        if not isinstance(probe_id, str) or not _ID.fullmatch(probe_id):
            raise SpecError("field 'id' must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        kind = data.get("kind")
        if kind is None:
            raise SpecError(f"missing field 'kind' (one of {', '.join(KINDS)})")
        if kind not in KINDS:
            raise SpecError(f"unknown kind {kind!r} (one of {', '.join(KINDS)})")
        allowed = _FIELDS[kind]
        for key in data:
            if key not in allowed:
                known = set().union(*_FIELDS.values())
                if key in known:
                    raise SpecError(f"field {key!r} does not apply to {kind} probes")
                raise SpecError(f"unknown field {key!r} (fields of {kind} probes: {', '.join(sorted(allowed))})")
        for key in _REQUIRED[kind]:
            if data.get(key) is None:
                raise SpecError(f"missing field {key!r}, required for {kind} probes")

        reveal = validate_reveal(data.get("reveal"), "field 'reveal'")
        values: dict[str, Any] = {"id": probe_id, "kind": kind, "reveal": reveal}

        if kind in LINE_KINDS:
            values["file"] = _file(data["file"])
            values["line"] = _line(data["line"])
        if kind in FUNCTION_KINDS:
            function = data["function"]
            if not isinstance(function, str) or not _FUNCTION.fullmatch(function.strip()):
                raise SpecError(
                    f"field 'function' must be MODULE:QUALNAME, e.g. shop.orders:Cart.checkout (got {function!r})"
                )
            values["function"] = function.strip()
        if kind == "exception":
            exc = data.get("exception", "Exception")
            if not isinstance(exc, str) or not _EXCEPTION.fullmatch(exc.strip()):
                raise SpecError(f"field 'exception' must be an exception type name such as ValueError (got {exc!r})")
            values["exception"] = exc.strip()

        if data.get("condition") is not None:
            checked = check_expression(data["condition"], "condition", rules, reveal)
            values["condition"] = checked.source
            values["checked_condition"] = checked
        if kind == "snapshot" and data.get("watch") is not None:
            watch = data["watch"]
            if isinstance(watch, str):
                watch = [watch]
            if not isinstance(watch, list) or len(watch) > MAX_WATCH:
                raise SpecError(f"field 'watch' must be a list of at most {MAX_WATCH} expressions")
            checked_watch = tuple(check_expression(w, "watch expression", rules, reveal) for w in watch)
            values["watch"] = tuple(c.source for c in checked_watch)
            values["checked_watch"] = checked_watch
        if kind == "log":
            parts = parse_template(data["template"], "template", rules, reveal)
            values["template"] = data["template"]
            values["checked_template"] = parts
        if kind == "metric" and data.get("value") is not None:
            checked_value = check_expression(data["value"], "metric value", rules, reveal)
            values["value"] = checked_value.source
            values["checked_value"] = checked_value

        values["max_hits"] = _max_hits(data.get("max_hits"), kind)
        values["rate"] = _rate(data.get("rate"), kind)
        ttl = data.get("ttl")
        if ttl is not None:
            seconds = parse_duration(ttl, "field 'ttl'")
            if seconds > MAX_TTL_SECONDS:
                raise SpecError("field 'ttl' may be at most 24h")
            values["ttl"] = seconds
        if kind == "stacks":
            for key in ("after", "every"):
                if data.get(key) is not None:
                    values[key] = parse_duration(data[key], f"field {key!r}")
            if values.get("every") is not None and values["every"] < 1.0:
                raise SpecError("field 'every' must be at least 1s")
        return cls(**values)


def _file(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"field 'file' must be a path such as shop/orders.py (got {value!r})")
    text = value.strip().replace("\\", "/")
    if "\x00" in text or not text.endswith(".py"):
        raise SpecError(f"field 'file' must name a Python source file ending in .py (got {value!r})")
    return text


def _line(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"field 'line' must be a line number, an integer of at least 1 (got {value!r})")
    return value


def _max_hits(value: object, kind: str) -> int | None:
    if value is None:
        return DEFAULT_MAX_HITS[kind]
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_HITS_CEILING:
        raise SpecError(f"field 'max_hits' must be an integer from 1 to {MAX_HITS_CEILING} (got {value!r})")
    return value


def _rate(value: object, kind: str) -> float | None:
    if value is None:
        return DEFAULT_RATE[kind]
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_RATE:
        raise SpecError(f"field 'rate' must be events per second, above 0 and at most {MAX_RATE:g} (got {value!r})")
    return float(value)


@dataclass(frozen=True)
class ProbeFile:
    probes: tuple[ProbeSpec, ...]
    redaction: RedactionRules


def parse_probe_file_data(data: object) -> ProbeFile:
    """Validate the content of a probe file (already parsed from JSON or YAML)."""
    if not isinstance(data, Mapping):
        raise SpecError('a probe file must be an object with a "probes" list, e.g. {"probes": [...]}')
    unknown = set(data) - {"probes", "redaction"}
    if unknown:
        raise SpecError(f"unknown top-level field {sorted(map(str, unknown))[0]!r} (known fields: probes, redaction)")
    probes = data.get("probes")
    if not isinstance(probes, list):
        raise SpecError('a probe file must have a "probes" list')
    if not probes:
        raise SpecError('the "probes" list is empty: add at least one probe')
    rules = RedactionRules.from_dict(data.get("redaction"))
    specs = tuple(ProbeSpec.from_dict(p, rules) for p in probes)
    seen: set[str] = set()
    for spec in specs:
        if spec.id in seen:
            raise SpecError(f"probe id {spec.id!r} is used twice; give each probe its own id")
        seen.add(spec.id)
    return ProbeFile(probes=specs, redaction=rules)
