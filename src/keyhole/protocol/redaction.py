"""Redaction rules shared by the agent (before anything is serialized) and the gateway (on ingest).

Three ways a value is redacted:
- by name: a local, argument, attribute or dict key whose normalised name is a known secret name;
- by value: a string that contains a card number, a JWT, a private key, a cloud key, a bearer
  credential, credentials in a URL, an e-mail address or a phone number;
- by type: an object whose qualified type name matches a glob pattern.

A redacted value becomes a marker naming the class (``{"@redacted": "secret"}``, or
``[redacted:pii]`` inside a longer string) and never any part of the value.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from keyhole.protocol.errors import SpecError

NAME_CLASS = "secret"
TYPE_CLASS = "type"
VALUE_CLASSES = ("private-key", "jwt", "bearer", "url-credentials", "cloud-key", "card", "pii")
CLASSES = (NAME_CLASS, TYPE_CLASS, *VALUE_CLASSES)

MARKER_KEY = "@redacted"


def _load_floor() -> frozenset[str]:
    text = resources.files("keyhole.protocol").joinpath("data/redacted-identifiers.txt").read_text("utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))


# The floor (ddtrace's list, see the data file) plus names it misses that we have seen hold secrets.
_EXTRA_NAMES = frozenset(
    {
        "accesskey",
        "accesskeyid",
        "secretaccesskey",
        "awssecretaccesskey",
        "awssessiontoken",
        "sessiontoken",
        "idtoken",
        "apitoken",
        "bearer",
        "credential",
        "passphrase",
        "privkey",
        "clientkey",
        "cvc",
        "cvv2",
        "cardnumber",
        "iban",
        "socialsecuritynumber",
        "dsn",
        "totp",
        "mfacode",
        "otpcode",
        "webhooksecret",
        "signingkey",
        "hmackey",
        "cookies",
        "setcookies",
        "proxyauthorization",
        "xamzsecuritytoken",
        "xgoogapikey",
    }
)
# A name that ends with one of these is a secret too (db_password, stripe_secret_key, github_token).
_SUFFIXES = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "secretkey",
    "privatekey",
    "accesskey",
    "credentials",
    "credential",
    "cookie",
    "sessionid",
    "authorization",
)

DEFAULT_NAMES: frozenset[str] = _load_floor() | _EXTRA_NAMES


def normalize_name(name: str) -> str:
    """Lower case, with '_' and '-' removed: ``X-Api-Key`` and ``x_api_key`` are the same name."""
    return name.lower().replace("_", "").replace("-", "")


@dataclass(frozen=True)
class RedactionRules:
    """What to redact beyond the defaults, and which default names a team decided to show."""

    names: frozenset[str] = frozenset()
    exempt: frozenset[str] = frozenset()
    types: tuple[str, ...] = ()
    _type_regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_dict(cls, data: object) -> RedactionRules:
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise SpecError("redaction must be an object with optional fields names, exempt and types")
        unknown = set(data) - {"names", "exempt", "types"}
        if unknown:
            raise SpecError(f"redaction: unknown field {sorted(unknown)[0]!r} (known fields: names, exempt, types)")
        names = _string_list(data.get("names"), "redaction.names")
        exempt = _string_list(data.get("exempt"), "redaction.exempt")
        types = _string_list(data.get("types"), "redaction.types")
        for pattern in types:
            if not re.fullmatch(r"[A-Za-z0-9_.*?\[\]]+", pattern):
                raise SpecError(
                    f"redaction.types: {pattern!r} is not a glob over qualified type names "
                    "(use letters, digits, '_', '.', '*' and '?', e.g. 'myapp.secrets.*')"
                )
        return cls.build(names, exempt, types)

    @classmethod
    def build(cls, names: Iterable[str] = (), exempt: Iterable[str] = (), types: Iterable[str] = ()) -> RedactionRules:
        type_list = tuple(types)
        regex = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in type_list)) if type_list else None
        return cls(
            names=frozenset(normalize_name(n) for n in names),
            exempt=frozenset(normalize_name(n) for n in exempt),
            types=type_list,
            _type_regex=regex,
        )

    def to_dict(self) -> dict[str, list[str]]:
        return {"names": sorted(self.names), "exempt": sorted(self.exempt), "types": list(self.types)}

    def name_is_secret(self, name: str) -> bool:
        """True when a value stored under `name` must be redacted (class "secret")."""
        norm = normalize_name(name)
        if norm in self.exempt:
            return False
        return norm in DEFAULT_NAMES or norm in self.names or norm.endswith(_SUFFIXES)

    def type_is_secret(self, qualified_type_name: str) -> bool:
        return self._type_regex is not None and self._type_regex.fullmatch(qualified_type_name) is not None


DEFAULT_RULES = RedactionRules()


def _string_list(value: object, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SpecError(f"{what} must be a list of non-empty strings")
    return list(value)


def validate_reveal(value: object, what: str = "reveal") -> tuple[str, ...]:
    """The redaction classes a viewer may see unredacted; default none."""
    items = _string_list(value, what)
    for item in items:
        if item not in CLASSES:
            raise SpecError(f"{what}: unknown redaction class {item!r} (classes: {', '.join(CLASSES)})")
    return tuple(dict.fromkeys(items))


# --- by value -----------------------------------------------------------------------------------

# One regular expression per family, in the order they are tried at each position.
_BRANCHES: dict[str, str] = {
    "privatekey": r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
    r"(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|.*)",
    "jwt": r"eyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}(?:\.[A-Za-z0-9_-]*)?",
    "bearer": r"\b(?:[Bb]earer|BEARER|[Bb]asic|BASIC|[Tt]oken)\s+[A-Za-z0-9._~+/=-]{8,}",
    "urlcred": r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]+:[^\s@/]+@",
    "cloudkey": r"\b(?:(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}"
    r"|AIza[0-9A-Za-z_-]{35}|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}|glpat-[A-Za-z0-9_-]{20,})\b",
    "email": r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
    "card": r"(?<![\d.])\d(?:[ -]?\d){12,18}(?![\d.])",
    "phone": r"(?<![\w+])\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}(?![\w])"
    r"|(?<![\w(])\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}(?!\w)",
}
_GROUP_CLASS = {
    "privatekey": "private-key",
    "jwt": "jwt",
    "bearer": "bearer",
    "urlcred": "url-credentials",
    "cloudkey": "cloud-key",
    "email": "pii",
    "card": "card",
    "phone": "pii",
}
_BIT = {name: 1 << i for i, name in enumerate(_BRANCHES)}

# What each family cannot match without. Scanning a string with every pattern at every position costs
# microseconds; these checks pick the few patterns worth running (usually none).
_WORD_HINT = (  # literal alternatives: Python's re scans those several times faster than classes
    r"Bearer|bearer|BEARER|Basic|basic|BASIC|Token|token|AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA|AIza"
    r"|ghp_|gho_|ghu_|ghs_|ghr_|github_pat_|xox|sk_live_|sk_test_|rk_live_|rk_test_|glpat-"
)
_WORDS = re.compile(_WORD_HINT)
_SHORTEST_WORD_SECRET = 13  # "token " and 8 characters; every cloud key is longer
# A phone number has 8 digits or more, with at most two of " .-()" between two of them; a card
# number 13 or more, with at most one space or dash between two.
_PHONE_DIGITS = re.compile(r"\d(?:[ .()-]{0,2}\d){7}")
_CARD_DIGITS = re.compile(r"\d(?:[ -]?\d){12}")
# ASCII text mapped to its shape: digits to "9", the punctuation phone numbers use to "-", the rest
# to "x". A card or phone number lies inside one stretch between two "x".
_SHAPE = bytes(ord("9") if chr(b).isdigit() else ord("-") if chr(b) in " .()-" else ord("x") for b in range(256))


_DIGIT_STRETCH = re.compile(rb"[-9]{8,}")


def _most_digits_together(text: str) -> int:
    """At least the number of digits of the longest card or phone number text could hold."""
    if not text.isascii():
        return len(text)  # \\d also matches other scripts' digits: assume the worst
    stretches: list[bytes] = _DIGIT_STRETCH.findall(text.encode("ascii").translate(_SHAPE))
    if not stretches:  # the usual case, decided in C
        return 0
    return max(stretch.count(b"9") for stretch in stretches)


# The cheapest first test, true for every string any family could match; most strings fail it.
SECRET_HINT = re.compile(r"[\d@:]|-----|eyJ|" + _WORD_HINT)  # \d: any script's digits, as the patterns


def _families(text: str) -> int:
    found = 0
    if "-----BEGIN" in text:
        found |= _BIT["privatekey"]
    if "eyJ" in text:
        found |= _BIT["jwt"]
    if "://" in text:
        found |= _BIT["urlcred"]
    if "@" in text:
        found |= _BIT["email"]
    if len(text) >= _SHORTEST_WORD_SECRET and _WORDS.search(text) is not None:
        found |= _BIT["bearer"] | _BIT["cloudkey"]
    digits = _most_digits_together(text)
    if digits >= 8 and _PHONE_DIGITS.search(text) is not None:
        found |= _BIT["phone"]
        if digits >= 13 and _CARD_DIGITS.search(text) is not None:
            found |= _BIT["card"]
    return found


def may_hold_secret(text: str) -> bool:
    """False when no secret could be found in text by value. Cheap, and also true of a whole batch
    of log lines joined with NUL: one test clears them all."""
    return SECRET_HINT.search(text) is not None and _families(text) != 0


@functools.cache
def _pattern(families: int) -> re.Pattern[str]:
    """The patterns of these families in one alternation (at most 256 combinations, compiled once)."""
    chosen = [f"(?P<{name}>{body})" for name, body in _BRANCHES.items() if families & _BIT[name]]
    return re.compile("|".join(chosen), re.DOTALL)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)  # any script's decimal digit, as \\d matched it
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _classify(match: re.Match[str]) -> str | None:
    group = match.lastgroup
    if group is None:
        return None
    cls = _GROUP_CLASS[group]
    text = match.group(0)
    if group == "card":
        digits = re.sub(r"\D", "", text)
        if not 13 <= len(digits) <= 19 or not luhn_ok(digits):
            return None
    elif group == "phone":
        digits = re.sub(r"\D", "", text)
        if not 8 <= len(digits) <= 15:
            return None
    return cls


def may_match(text: str) -> bool:
    """True of every string of 6 characters or more in which `_families` finds a family: its tests,
    cheapest first. Unlike SECRET_HINT, which any digit passes, a number of fewer than 8 digits
    does not, so dates, ids and line numbers stop here."""
    return (
        "@" in text
        or "://" in text
        or "eyJ" in text
        or "-----BEGIN" in text
        or (len(text) >= _SHORTEST_WORD_SECRET and _WORDS.search(text) is not None)
        or _PHONE_DIGITS.search(text) is not None
    )


def text_changes(text: str, reveal: frozenset[str] | tuple[str, ...] = ()) -> bool:
    """Whether `redact_text` would change text: the same patterns in the same order (behind the
    stricter `may_match` rather than SECRET_HINT), with nothing built."""
    if len(text) < 6 or not may_match(text):
        return False
    families = _families(text)
    if not families:
        return False
    for match in _pattern(families).finditer(text):
        cls = _classify(match)
        if cls is not None and cls not in reveal:
            return True
    return False


def redact_text(text: str, reveal: frozenset[str] | tuple[str, ...] = ()) -> tuple[str, str | None]:
    """Return (text with each secret replaced by ``[redacted:CLASS]``, the class if the whole text was one).

    When the whole string is a single secret the caller replaces it by a marker object instead.
    """
    if len(text) < 6 or SECRET_HINT.search(text) is None:
        return text, None
    families = _families(text)
    if not families:
        return text, None
    out: list[str] = []
    pos = 0
    whole: str | None = None
    for match in _pattern(families).finditer(text):
        cls = _classify(match)
        if cls is None or cls in reveal:
            continue
        if match.start() == 0 and match.end() == len(text):
            whole = cls
        out.append(text[pos : match.start()])
        out.append(f"[redacted:{cls}]")
        pos = match.end()
    if not out:
        return text, None
    out.append(text[pos:])
    return "".join(out), whole


def cut_text(text: str, limit: int) -> str:
    """The first `limit` characters of redacted text, never ending inside a redaction marker."""
    if len(text) <= limit:
        return text
    start = text.rfind("[redacted:", 0, limit + 9)  # a marker that starts before the limit
    if start != -1 and start < limit:
        end = text.find("]", start)
        if end >= limit:
            return text[: end + 1]
    return text[:limit]


def marker(cls: str) -> dict[str, str]:
    return {MARKER_KEY: cls}


def redact_plain(value: Any, rules: RedactionRules = DEFAULT_RULES, reveal: frozenset[str] = frozenset()) -> Any:
    """Redact a JSON-ready value by name and by value, without changing it in place.

    For a receiver of events (the gateway, on ingest: defence in depth). The agent does the same on
    its own, faster, in keyhole.agent.core.shipping. Keys beginning with '@' are keyhole's annotations and
    are left alone, except those that hold application text.
    """
    if isinstance(value, str):
        new, whole = redact_text(value, reveal)
        if whole is not None and new == f"[redacted:{whole}]":
            return marker(whole)
        return new
    if isinstance(value, list):
        return [redact_plain(v, rules, reveal) for v in value]
    if isinstance(value, dict):
        if MARKER_KEY in value:
            return value
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key.startswith("@") and not key.startswith("@@"):
                out[key] = redact_plain(item, rules, reveal) if key in ("@value", "@items", "@entries") else item
                continue
            name = key[1:] if key.startswith("@@") else key
            if NAME_CLASS not in reveal and rules.name_is_secret(name):
                out[key] = marker(NAME_CLASS)
                continue
            new_key, _ = redact_text(key, reveal)
            if new_key != key:
                new_key = f"{new_key}#{len(out)}"
            out[new_key] = redact_plain(item, rules, reveal)
        return out
    return value
