"""Finishing events on the agent's thread: names for thread ids, timestamps, redaction by value, JSON.

Redaction by name and by type already happened during capture, on the hit. Here every string that
came out of the process is checked for secrets by value (a card number, a JWT, an e-mail address...)
before anything is encoded; long strings are cut to their limit only after that check.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from keyhole.agent.reading.capture import LongText
from keyhole.agent.reading.stacks import thread_name
from keyhole.protocol.events import format_timestamp
from keyhole.protocol.limits import MAX_MESSAGE
from keyhole.protocol.redaction import MARKER_KEY, SECRET_HINT, cut_text, marker, redact_text

_HINT = SECRET_HINT.search

# Fields written by keyhole itself, never from application data.
_META = frozenset(
    {
        "probe",
        "kind",
        "ts",
        "thread",
        "pid",
        "phase",
        "call",
        "duration_ms",
        "interval",
        "count",
        "values",
        "sum",
        "min",
        "max",
        "mean",
        "p50",
        "p90",
        "p99",
        "final",
        "locations",
        "backend",
        "suppressed",
        "event",
        "hits",
        "emitted",
        "errors",
        "cpu_ms",
        "no_stack",
        "service",
        "python",
        "keyhole",
        "instance",
    }
)
_FRAME_META = frozenset({"file", "line", "function"})
_FIXED = frozenset({"probe", "kind", "ts", "thread", "pid"})


def _finish_text(value: str, reveal: tuple[str, ...]) -> Any:
    if len(value) < 6 or _HINT(value) is None:
        return value
    text, whole = redact_text(value, reveal)
    if whole is not None and text == f"[redacted:{whole}]":
        return marker(whole)
    return text


def finish_value(value: Any, reveal: tuple[str, ...]) -> Any:
    """Redact by value and cut long strings. Captured containers are keyhole's own fresh objects, so
    they are changed in place rather than copied."""
    kind = type(value)
    if kind is int or kind is bool or value is None:
        return value
    if kind is str:
        return _finish_text(value, reveal)
    if kind is list:
        for i, item in enumerate(value):
            if type(item) is not int:
                value[i] = finish_value(item, reveal)
        return value
    if kind is dict:
        if MARKER_KEY in value:
            return value
        renamed: list[tuple[str, str]] = []
        for key, item in value.items():
            if type(item) is not int:
                value[key] = finish_value(item, reveal)
            if (not key.startswith("@") or key.startswith("@@")) and len(key) >= 6 and _HINT(key) is not None:
                new_key, _ = redact_text(key, reveal)
                if new_key != key:
                    renamed.append((key, f"{new_key}#{len(renamed)}"))
        if renamed:  # rare: rebuild to keep the application's key order
            names = dict(renamed)
            return {names.get(k, k): v for k, v in value.items()}
        return value
    if kind is LongText:
        text, _ = redact_text(value.text, reveal)
        return {"@type": "str", "@value": cut_text(text, value.limit), "@size": value.size}
    if kind is float and not math.isfinite(value):
        return {"@type": "float", "@value": repr(value)}
    return value


def wall_offset() -> float:
    """Add to a perf_counter() reading to get the wall clock (hits read the cheaper monotonic clock)."""
    return time.time() - time.perf_counter()


def finish_event(
    event: dict[str, Any],
    pid: int,
    reveal: tuple[str, ...],
    offset: float | None = None,
    names: dict[int, str] | None = None,
    *,
    clean_message: bool = False,
) -> dict[str, Any]:
    """Finish an event in place (it is keyhole's own, fresh dict) and return it. `names` caches thread
    names for a batch of events (threads come and go between batches). `clean_message`: the caller
    has already found that the message holds nothing to redact."""
    if offset is None:
        offset = wall_offset()
    ts = event.get("ts")
    if type(ts) is float:
        event["ts"] = format_timestamp(ts + offset)
    thread = event.get("thread")
    if type(thread) is int:
        name = names.get(thread) if names is not None else None
        if name is None:
            name = thread_name(thread)
            if names is not None:
                names[thread] = name
        event["thread"] = name
    for key, value in event.items():  # assigning existing keys while iterating is allowed
        if key in _FIXED:
            continue
        if key == "message" and type(value) is str:
            # Cut on the hit with room to spare; redacted here, then cut to its limit.
            text = value if clean_message else _finish_text(value, reveal)
            event[key] = cut_text(text, MAX_MESSAGE) if type(text) is str else text
        elif key == "frames":
            event[key] = [_finish_frame(frame, reveal) for frame in value]
        elif key in _META:
            if type(value) is float and not math.isfinite(value):
                event[key] = finish_value(value, ())
        else:
            event[key] = finish_value(value, reveal)
    event["pid"] = pid
    return event


def _finish_frame(frame: Any, reveal: tuple[str, ...]) -> dict[str, Any]:
    if type(frame) is tuple:
        out: dict[str, Any] = {"file": frame[0], "line": frame[1], "function": frame[2]}
        if len(frame) > 3:
            out["locals"] = finish_value(frame[3], reveal)
        return out
    return {k: (v if k in _FRAME_META else finish_value(v, reveal)) for k, v in frame.items()}


def encode(event: dict[str, Any]) -> bytes:
    return (json.dumps(event, ensure_ascii=False, separators=(",", ":"), default=_fallback) + "\n").encode(
        "utf-8", "backslashreplace"
    )


def _fallback(value: Any) -> Any:
    # Plain values only reach the encoder; anything else is a keyhole defect, shown, never fatal.
    return {"@type": type(value).__name__, "@error": "unencodable"}
