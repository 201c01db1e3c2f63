"""The gateway's cheap re-check: `needs_redaction` must never call clean a value that `redact_plain`
would change, or a secret an agent let through would be stored as it came."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyhole.protocol.redaction import CLASSES, DEFAULT_RULES, RedactionRules, redact_plain, redact_text, text_changes
from keyhole.protocol.redaction_check import needs_redaction

from .test_redaction import _PIECES, SECRETS

_KEYS = [
    "order_id",
    "password",
    "@@password",
    "x-api-key",
    "note",
    "@type",
    "@value",
    "@items",
    "@entries",
    "@size",
    "@redacted",
    "@@type",
    "alice@example.com",
    "call +44 20 7946 0958",
    "items",
]
_texts = st.lists(st.sampled_from(_PIECES), max_size=6).map("".join) | st.text(max_size=24)
_leaves = _texts | st.integers() | st.floats(allow_nan=False) | st.booleans() | st.none()
_marker = st.sampled_from(CLASSES).map(lambda cls: {"@redacted": cls})
_values = st.recursive(
    _leaves | _marker,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(_KEYS) | _texts, children, max_size=4)
    ),
    max_leaves=20,
)
_reveals = st.frozensets(st.sampled_from(CLASSES), max_size=3)
_rules = st.sampled_from([DEFAULT_RULES, RedactionRules.build(names=["note"], exempt=["password"])])


@settings(max_examples=600, deadline=None)
@given(_values, _reveals, _rules)
def test_a_value_called_clean_is_one_redaction_leaves_alone(value: Any, reveal: frozenset[str], rules: Any) -> None:
    if not needs_redaction(value, rules, reveal):
        assert redact_plain(value, rules, reveal) == value


@settings(max_examples=400, deadline=None)
@given(_texts, _reveals)
def test_text_changes_exactly_when_redact_text_changes_it(text: str, reveal: frozenset[str]) -> None:
    assert text_changes(text, reveal) == (redact_text(text, reveal)[0] != text)


@pytest.mark.parametrize(("text", "cls"), SECRETS)
def test_every_kind_of_secret_is_noticed_wherever_it_hides(text: str, cls: str) -> None:
    for value in (
        text,
        [1, "ok", text],
        {"frames": [{"locals": {"note": text}}]},
        {"@type": "str", "@value": text},
        {"@type": "dict", "@entries": [["k", text]]},
        {text: 1},
        {"@@" + text: 1},
    ):
        assert needs_redaction(value, DEFAULT_RULES), value
    assert not needs_redaction({"note": text}, DEFAULT_RULES, frozenset({cls}))


def test_names_are_checked_unless_the_viewer_may_see_secrets() -> None:
    assert needs_redaction({"headers": {"authorization": "x"}}, DEFAULT_RULES)
    assert needs_redaction({"@@password": "x"}, DEFAULT_RULES)
    assert needs_redaction({"password": {"@redacted": "pii"}}, DEFAULT_RULES)  # it would become "secret"
    assert not needs_redaction({"password": {"@redacted": "secret"}}, DEFAULT_RULES)
    assert not needs_redaction({"password": "x"}, DEFAULT_RULES, frozenset({"secret"}))
    assert not needs_redaction({"@type": "Password", "@size": 3}, DEFAULT_RULES)


def test_what_an_agent_sends_after_redacting_is_clean() -> None:
    snapshot = {
        "frames": [
            {
                "file": "/srv/shop/orders.py",
                "line": 66,
                "function": "handle_order",
                "locals": {
                    "order_id": 1003,
                    "customer": {"@type": "shop.Customer", "email": {"@redacted": "pii"}, "since": "2021-03-04"},
                    "headers": {"authorization": {"@redacted": "secret"}, "x-request-id": "req-6474c240"},
                    "note": "paid by [redacted:card] at 10:42",
                    "total": 254.74,
                },
            }
        ]
    }
    assert not needs_redaction(snapshot, DEFAULT_RULES)
    assert redact_plain(snapshot) == snapshot


def test_a_subclass_of_str_list_or_dict_is_left_to_redact_plain() -> None:
    class Text(str):
        pass

    assert needs_redaction([Text("hello")], DEFAULT_RULES)


def test_a_tree_too_deep_to_walk_is_left_to_redact_plain() -> None:
    value: Any = "x"
    for _ in range(5000):
        value = [value]
    assert needs_redaction(value, DEFAULT_RULES)
