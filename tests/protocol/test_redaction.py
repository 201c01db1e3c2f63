"""Redaction rules: the shared identifier floor, keyhole's additions, and secrets recognised by value."""

from __future__ import annotations

import json
from importlib import resources

import pytest

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
