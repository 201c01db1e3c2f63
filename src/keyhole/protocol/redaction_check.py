"""Whether `redact_plain` would change a value, found without rebuilding it.

A receiver of events that the agent already redacted (the gateway, on ingest) redacts them again,
and nearly always nothing changes. Rebuilding every tree to learn that costs more than everything
else the gateway does with an event. This walk only reads: it takes the same branches as
`redact_plain`, checks names and strings with the same tests, and stops at the first thing that
would change. Only then does the caller redact for real. A property test holds the two to agreeing.
"""

from __future__ import annotations

from typing import Any

from keyhole.protocol.redaction import MARKER_KEY, NAME_CLASS, RedactionRules, may_match, text_changes

_SCANNED_ANNOTATIONS = frozenset({"@value", "@items", "@entries"})


class _Dirty(Exception):
    """Something would change; no need to look further."""


# What a dict key means for the walk.
_PLAIN = 0  # an ordinary name: its value is checked
_SCANNED = 1  # keyhole's annotation that holds application text (@value, @items, @entries)
_SKIPPED = 2  # keyhole's annotation that holds no application text (@type, @size...)
_SECRET = 3  # a secret name: its value must already be the marker
_CHANGED = 4  # the key's own text would be redacted

_CACHE_LIMIT = 4096  # keys come from application data: keep each cache bounded
_CACHED_KEY_LENGTH = 256  # and so may be long: those are decided each time, not kept


class _Keys:
    """What each key means, remembered: snapshots repeat the same few hundred names."""

    def __init__(self, rules: RedactionRules, reveal: frozenset[str]) -> None:
        self.rules = rules
        self.reveal = reveal
        self.by_name = NAME_CLASS not in reveal
        self.known: dict[str, int] = {}

    def meaning(self, key: str) -> int:
        found = self.known.get(key)
        if found is None:
            found = self._decide(key)
            if len(key) <= _CACHED_KEY_LENGTH:
                if len(self.known) >= _CACHE_LIMIT:
                    self.known.clear()
                self.known[key] = found
        return found

    def _decide(self, key: str) -> int:
        if key.startswith("@") and not key.startswith("@@"):
            return _SCANNED if key in _SCANNED_ANNOTATIONS else _SKIPPED
        if self.by_name and self.rules.name_is_secret(key[1:] if key.startswith("@@") else key):
            return _SECRET
        return _CHANGED if text_changes(key, self.reveal) else _PLAIN


_keys_cache: dict[tuple[RedactionRules, frozenset[str]], _Keys] = {}


def _keys(rules: RedactionRules, reveal: frozenset[str]) -> _Keys:
    keys = _keys_cache.get((rules, reveal))
    if keys is None:
        if len(_keys_cache) >= 64:
            _keys_cache.clear()
        keys = _keys_cache[rules, reveal] = _Keys(rules, reveal)
    return keys


def _check_item(item: Any, keys: _Keys) -> None:
    kind = type(item)
    if kind is str:
        if len(item) >= 6 and may_match(item) and text_changes(item, keys.reveal):
            raise _Dirty
    elif kind is dict:
        _check_dict(item, keys)
    elif kind is list:
        for element in item:
            if type(element) is not int:
                _check_item(element, keys)
    elif isinstance(item, (str, list, dict)):
        raise _Dirty  # a subclass: redact_plain would rebuild it as the plain type


def _check_dict(value: dict[str, Any], keys: _Keys) -> None:
    if MARKER_KEY in value:
        return
    known = keys.known
    for key, item in value.items():
        found = known.get(key)
        if found is None:
            found = keys.meaning(key)
        if found <= _SCANNED:
            kind = type(item)
            if kind is str:  # the leaves, inline: most of a snapshot
                if len(item) >= 6 and may_match(item) and text_changes(item, keys.reveal):
                    raise _Dirty
            elif kind is not int and kind is not float and item is not None:
                _check_item(item, keys)
        elif found == _SECRET:
            if type(item) is not dict or len(item) != 1 or item.get(MARKER_KEY) != NAME_CLASS:
                raise _Dirty  # not yet the very marker redact_plain would put there
        elif found == _CHANGED:
            raise _Dirty


def needs_redaction(value: Any, rules: RedactionRules, reveal: frozenset[str] = frozenset()) -> bool:
    """False only when ``redact_plain(value, rules, reveal)`` would return an equal value."""
    try:
        _check_item(value, _keys(rules, reveal))
    except _Dirty:
        return True
    except RecursionError:
        return True  # too deep to walk: the caller's own redaction meets the same depth and decides
    return False
