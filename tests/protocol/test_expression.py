"""The safe expression language: what the checker allows and what it refuses, with the reason."""

from __future__ import annotations

import re

import pytest

from keyhole.protocol.errors import ExpressionError
from keyhole.protocol.expression import TemplateField, check_expression, parse_template
from keyhole.protocol.redaction import RedactionRules

ALLOWED = [
    "order.total > 100",
    "order.items[0].sku == 'A-1'",
    "len(order.items) >= 2 and not order.paid",
    "user.name.startswith('adm') or user.id in (1, 2, 3)",
    "(a + b) * 2 - c / 4 // 1 % 3",
    "x ** 3",
    "d.get('k', 0) + max(1, 2, 3)",
    "isinstance(order, 'Order')",
    "typename(order) == 'shop.Order'",
    "a if b else c",
    "s[1:3]",
    "{'k': 1}['k']",
    "-x < ~y",
    "x is None",
    "items[-1]",
]

REFUSED = [
    ("lambda: 1", "lambdas are not allowed"),
    ("[x for x in y]", "comprehensions are not allowed"),
    ("{x for x in y}", "comprehensions are not allowed"),
    ("(x for x in y)", "generator expressions are not allowed"),
    ("(y := 1)", "assignment expressions"),
    ("await x", "await is not allowed"),
    ("len(*args)", "starred expressions"),
    ("f'{x}'", "f-strings are not allowed"),
    ("open('/etc/passwd')", "calling open() is not allowed"),
    ("__import__('os')", "calling __import__() is not allowed"),
    ("__builtins__", "dunder name '__builtins__'"),
    ("x.__class__", "dunder attribute '__class__'"),
    ("x.__dict__['a']", "dunder attribute '__dict__'"),
    ("obj.save()", "calling .save() is not allowed"),
    ("eval('1')", "calling eval() is not allowed"),
    ("len(x, key=1)", "keyword arguments are not allowed"),
    ("x ** 100000", "exponent 100000 could explode"),
    ("2 ** 10 ** 9", "could explode"),
    ("'a' * 100000000", "repetition by 100000000 could explode"),
    ("[0] * 100000000", "repetition by 100000000 could explode"),
    ("1 << 100000", "shift by 100000 could explode"),
    ("'" + "a" * 1500 + "'", "literal is too long"),
    ("'" + "a" * 2500 + "'", "longer than 2000 characters"),
    ("1" * 200, "integer literal is too large"),
    ("x = 1", "not a Python expression"),
    ("import os", "not a Python expression"),
    ("", "is empty"),
    ("a" + "[0]" * 300, "nested too deeply"),
    ("(" + ", ".join(["a.b.c.d"] * 64) + ")", "too large"),
    ("...", "... is not allowed"),
    ("(lambda: 0)()", "only named helpers"),
    ("password", "reads 'password', which keyhole redacts"),
    ("user.api_key", "reads 'user.api_key'"),
    ("headers['Authorization']", "reads \"headers['Authorization']\""),
    ("data.get('db_password')", "redacts"),
]


@pytest.mark.parametrize("source", ALLOWED)
def test_allowed_expressions(source: str) -> None:
    assert check_expression(source).source == source


@pytest.mark.parametrize(("source", "reason"), REFUSED)
def test_refused_expressions_name_the_reason(source: str, reason: str) -> None:
    with pytest.raises(ExpressionError) as raised:
        check_expression(source, "condition")
    message = str(raised.value)
    assert reason in message
    assert "\n" not in message


def test_a_non_string_expression_is_refused() -> None:
    with pytest.raises(ExpressionError, match="must be a string"):
        check_expression(42)


def test_reveal_secret_allows_reading_secret_names() -> None:
    assert check_expression("password", reveal=("secret",)).source == "password"


def test_user_rules_add_and_exempt_names() -> None:
    rules = RedactionRules.build(names=["tenant_ref"], exempt=["session"])
    with pytest.raises(ExpressionError):
        check_expression("x.tenant_ref", rules=rules)
    assert check_expression("session.id", rules=rules)


def test_templates_split_into_text_and_fields() -> None:
    parts = parse_template("order {order.id}: {{literal}} total={total:.2f} {d['k']}")
    assert parts[0] == "order "
    assert isinstance(parts[1], TemplateField) and parts[1].expression.source == "order.id"
    assert parts[2] == ": {literal} total="
    assert isinstance(parts[3], TemplateField) and parts[3].format_spec == ".2f"
    assert isinstance(parts[5], TemplateField) and parts[5].expression.source == "d['k']"


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("x={x!r}", "conversions such as !r are not allowed"),
        ("x={x", "is never closed"),
        ("x}", "single '}'"),
        ("{password}", "redacts"),
        ("{f()}", "calling f() is not allowed"),
        ("{x:%s}", "is not a standard format spec"),
        ("{x}" * 40, "more than 32 fields"),
        (7, "must be a string"),
    ],
)
def test_bad_templates_are_refused(template: object, reason: str) -> None:
    with pytest.raises(ExpressionError, match=re.escape(reason)):
        parse_template(template)
