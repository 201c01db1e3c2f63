"""Option values the CLI checks itself, so a bad one is one line naming the flag."""

from __future__ import annotations

import re

from keyhole.cli.errors import CliError
from keyhole.protocol.durations import format_duration, parse_duration
from keyhole.protocol.errors import SpecError


def duration_option(text: str, flag: str, *, minimum: float = 0.0, maximum: float = float("inf")) -> float:
    try:
        seconds = parse_duration(text, flag)
    except SpecError as exc:
        raise CliError(str(exc)) from None
    if seconds < minimum:
        raise CliError(f"{flag} must be at least {format_duration(minimum)} (got {text})")
    if seconds > maximum:
        raise CliError(f"{flag} may be at most {format_duration(maximum)} (got {text})")
    return seconds


_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def id_argument(value: str, what: str) -> str:
    """An id that goes into a URL path: refused here rather than sent as a path the gateway misreads."""
    if not _ID.fullmatch(value):
        raise CliError(f"{value!r} is not a {what} id (letters, digits, '.', '_' or '-')")
    return value


def labels_option(values: list[str] | None) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--label must be KEY=VALUE (got {item!r})")
        labels[key.strip()] = value.strip()
    return labels
