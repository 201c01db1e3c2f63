"""Durations as users write them: 30s, 15m, 2h, 1h30m, 500ms, or a number of seconds."""

import re

from keyhole.protocol.errors import SpecError

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: object, what: str = "duration") -> float:
    """Return seconds; raise SpecError naming `what` when the value is not a positive duration."""
    if isinstance(value, bool):
        raise SpecError(f"{what} must be a duration such as 30s, 15m or 2h (got {value!r})")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        else:
            pos = 0
            seconds = 0.0
            for match in _PART.finditer(text):
                if match.start() != pos:
                    break
                seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
                pos = match.end()
            if pos != len(text) or not text:
                raise SpecError(f"{what} must be a duration such as 30s, 15m or 2h (got {value!r})")
    else:
        raise SpecError(f"{what} must be a duration such as 30s, 15m or 2h (got {type(value).__name__})")
    if not 0 < seconds < float("inf"):
        raise SpecError(f"{what} must be greater than zero (got {value!r})")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of a duration, for messages."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    if seconds >= 1 and seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:g}s"
