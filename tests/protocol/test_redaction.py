"""Redaction rules: the shared identifier floor, keyhole's additions, and secrets recognised by value."""

from __future__ import annotations

import json
from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyhole.protocol import redaction
from keyhole.protocol.redaction import DEFAULT_RULES, RedactionRules, luhn_ok, redact_plain, redact_text


def _floor() -> list[str]:
    text = resources.files("keyhole.protocol").joinpath("data/redacted-identifiers.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_the_floor_has_at_least_85_identifiers_and_all_are_redacted() -> None:
    floor = _floor()
    assert len(floor) >= 85
    for name in floor:
        assert DEFAULT_RULES.name_is_secret(name), name


@pytest.mark.parametrize(
    "name",
    [
        "password",
        "PASSWORD",
        "Pass_Word",
        "x-api-key",
        "X_API_KEY",
        "db_password",
        "stripe_secret_key",
        "github_token",
        "csrf_token",
        "private_key",
        "aws_secret_access_key",
        "set-cookie",
        "__password",
    ],
)
def test_secret_names_in_any_spelling(name: str) -> None:
    assert DEFAULT_RULES.name_is_secret(name)


@pytest.mark.parametrize("name", ["total", "order", "tokens_used", "tokenizer", "user_id", "email_count"])
def test_ordinary_names_are_not_secret(name: str) -> None:
    assert not DEFAULT_RULES.name_is_secret(name)


def test_rules_extend_and_exempt() -> None:
    rules = RedactionRules.build(names=["tenant-ref"], exempt=["session"], types=["shop.secrets.*"])
    assert rules.name_is_secret("tenant_ref") and not rules.name_is_secret("session")
    assert rules.type_is_secret("shop.secrets.Key") and not rules.type_is_secret("shop.orders.Order")


SECRETS = [
    ("card 4111 1111 1111 1111 ok", "card"),
    ("5500-0000-0000-0004", "card"),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "jwt"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----", "private-key"),
    ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC (cut off", "private-key"),
    ("key AKIAIOSFODNN7EXAMPLE here", "cloud-key"),
    ("key AKIAABCDEFGHIJKLMNOP here", "cloud-key"),  # no digit, no punctuation: nothing else hints at it
    ("github_pat_ABCDEFGHIJKLMNOPQRSTUVWXYZ", "cloud-key"),
    ("rk_test_ABCDEFGHIJKLMNOPQRS", "cloud-key"),
    ("AIzaSyA1234567890abcdefghijklmnopqrstuv", "cloud-key"),
    ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "cloud-key"),
    ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "cloud-key"),
    ("Authorization: Bearer abc.def.ghi-123456", "bearer"),
    ("postgres://admin:s3cr3t@db.internal/prod", "url-credentials"),
    ("mail alice@example.com now", "pii"),
    ("call +44 20 7946 0958", "pii"),
    ("(555) 123-4567", "pii"),
]


@pytest.mark.parametrize(("text", "cls"), SECRETS)
def test_secrets_are_recognised_by_value_and_never_shown(text: str, cls: str) -> None:
    redacted, _ = redact_text(text)
    assert f"[redacted:{cls}]" in redacted
    for piece in (
        "4111",
        "0004",
        "dozjg",
        "MIIE",
        "AKIAIOSF",
        "AKIAABCD",
        "github_pat",
        "rk_test",
        "AIzaSy",
        "ghp_abc",
        "sk_live",
        "abc.def",
        "s3cr3t",
        "alice",
        "7946",
        "123-4567",
    ):
        assert piece not in redacted


@pytest.mark.parametrize(
    "text",
    [
        "order 12345 shipped",
        "4111 1111 1111 1112",
        "2026-11-21T10:00:00Z",
        "version 3.12.1",
        "total 1234.56",
        "192.168.100.200",
        "id=550e8400-e29b-41d4-a716-446655440000",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact_text(text) == (text, None)


def _in_digits(text: str, zero: int) -> str:
    """text with its ASCII digits written in another script's (zero: that script's digit zero)."""
    return text.translate(str.maketrans("0123456789", "".join(chr(zero + d) for d in range(10))))


@pytest.mark.parametrize(
    ("text", "cls"),
    [
        (_in_digits("call +123 4567 890 now", 0x0660), "pii"),  # Arabic-Indic digits
        (_in_digits("card 4111 1111 1111 1111", 0xFF10), "card"),  # fullwidth digits
    ],
)
def test_numbers_in_other_scripts_digits_are_redacted_too(text: str, cls: str) -> None:
    redacted, _ = redact_text(text)
    assert f"[redacted:{cls}]" in redacted and not any(ch.isdigit() for ch in redacted)


def test_luhn() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")


def test_a_whole_value_secret_becomes_a_marker_and_reveal_shows_it() -> None:
    value = {"email": "alice@example.com", "note": "hi", "nested": ["bob@example.com"], "password": "x"}
    out = redact_plain(value)
    assert out == {
        "email": {"@redacted": "pii"},
        "note": "hi",
        "nested": [{"@redacted": "pii"}],
        "password": {"@redacted": "secret"},
    }
    shown = redact_plain(value, reveal=frozenset({"pii"}))
    assert shown["email"] == "alice@example.com" and shown["password"] == {"@redacted": "secret"}
    assert "alice" not in json.dumps(out)


# Pieces of secrets and of text that looks like them, glued at random: the shortcut that runs only the
# patterns a string could match must find exactly what running all of them finds.
_PIECES = [
    "+1 (555) 123-4567",
    "555.123.4567",
    "4111 1111 1111 1111",
    "5500-0000-0000-0004",
    "+44 20 7946 0958",
    "(555) 123-4567",
    "12345678",
    "alice@example.com",
    "@",
    "://",
    "postgres://u:p@h/",
    "Bearer abcdefgh12",
    "token ",
    "AKIAABCDEFGHIJKLMNOP",
    "AIzaSyA1234567890abcdefghijklmnopqrstuv",
    "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "xoxb-1234567890",
    "sk_live_4eC39HqLyjWDarjtT1zdp",
    "glpat-abcdefghijklmnopqrst",
    "eyJhbGciOi.eyJzdWIiOi.sig",
    "-----BEGIN PRIVATE KEY-----",
    "-----END PRIVATE KEY-----",
    " ",
    "-",
    ".",
    "(",
    ")",
    "a",
    "Z",
    "0",
    "7",
    "\n",
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=12))
def test_choosing_patterns_by_hint_finds_what_all_patterns_find(pieces: list[str]) -> None:
    text = "".join(pieces)
    everything = redaction._pattern((1 << len(redaction._BRANCHES)) - 1)
    expected = text
    matches = [m for m in everything.finditer(text) if redaction._classify(m) is not None]
    if len(text) >= 6 and matches:
        expected = "".join(
            [text[: matches[0].start()]]
            + [
                f"[redacted:{redaction._classify(m)}]"
                + text[m.end() : (matches[i + 1].start() if i + 1 < len(matches) else len(text))]
                for i, m in enumerate(matches)
            ]
        )
    assert redact_text(text)[0] == expected
