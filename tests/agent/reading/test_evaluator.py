"""The evaluator's semantics: what expressions compute, and the errors users see when they cannot."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum, IntEnum
from typing import Any

import pytest

from keyhole.agent.errors import EvalError, RedactedRead, StepBudgetExceeded
from keyhole.agent.reading.evaluator import compile_expression
from keyhole.agent.reading.scope import Scope
from keyhole.protocol.expression import check_expression
from keyhole.protocol.redaction import DEFAULT_RULES

MODULE_SETTING = 7


class Color(Enum):
    RED = 1


class Level(IntEnum):
    HIGH = 3


@dataclass
class Item:
    sku: str
    price: float


class Order:
    __slots__ = ("id", "items", "note", "paid")

    def __init__(self) -> None:
        self.id = 42
        self.items = [Item("A-1", 9.5), Item("B-2", 20.0)]
        self.paid = False

    @property
    def total(self) -> float:
        raise AssertionError("a property ran")


class WithEq:
    def __eq__(self, other: object) -> bool:
        raise AssertionError("__eq__ ran")

    __hash__ = object.__hash__


def _scope_with(**names: Any) -> Scope:
    """A scope whose locals are `names` and whose globals are this module's."""
    scope = Scope(sys._getframe())
    scope.locals = dict(names)
    return scope


def ev(source: str, **names: Any) -> Any:
    compiled = compile_expression(check_expression(source), DEFAULT_RULES)
    return compiled.evaluate(_scope_with(**names))


ORDER = Order()

CASES = [
    ("order.id", 42),
    ("order.items[1].price * 2", 40.0),
    ("len(order.items)", 2),
    ("order.items[0].sku.startswith('A')", True),
    ("order.items[-1].sku.lower()", "b-2"),
    ("not order.paid and order.id > 40", True),
    ("order.id if order.paid else -1", -1),
    ("1 < order.id <= 42 < 100", True),
    ("sum([1, 2.5, 3])", 6.5),
    ("max(3, 9, 4) - min([5, 2])", 7),
    ("sorted(['b', 'a'])", ["a", "b"]),
    ("any([0, '', 3]) and all([1, 'x'])", True),
    ("abs(-3) + round(2.567, 2)", 5.57),
    ("int('12') + float('0.5')", 12.5),
    ("str(42) + str(None)", "42None"),
    ("str(True) + str(order.paid)", "TrueFalse"),
    ("bool([]) or bool(0)", False),
    ("typename(order)", "tests.agent.reading.test_evaluator.Order"),
    ("isinstance(order, 'Order') and not isinstance(order, 'Item')", True),
    ("'A-1' in ['A-1', 'C-3']", True),
    ("'x' not in 'abc'", True),
    ("{'k': 1}.get('k', 0) + {'k': 1}.get('z', 5)", 6),
    ("sorted({'b': 1, 'a': 2}.keys())", ["a", "b"]),
    ("'a,b,c'.split(',')[1]", "b"),
    ("'hello'[1:3]", "el"),
    ("(1, 2, 3)[::2]", (1, 3)),
    ("7 // 2 + 7 % 2 + 2 ** 3", 12),
    ("1 << 4 | 1", 17),
    ("-order.id", -42),
    ("~5", -6),
    ("~True", -2),
    ("None is None and order is not None", True),
    ("MODULE_SETTING * 2", 14),
    ("level == 3 and level > 2", True),
    ("color_name == 'RED'", True),
    ("amount > 1 and amount == Decimal_one_point_five", True),
    ("float(amount) + 1", 2.5),
    ("'%' + 'd'", "%d"),
]


@pytest.mark.parametrize(("source", "expected"), CASES)
def test_expressions_compute_what_python_would(source: str, expected: Any) -> None:
    names = {
        "order": ORDER,
        "level": Level.HIGH,
        "color_name": Color.RED.name,
        "amount": Decimal("1.5"),
        "Decimal_one_point_five": Decimal("1.5"),
    }
    scope = _scope_with(**names)
    scope.frame = sys._getframe()
    compiled = compile_expression(check_expression(source), DEFAULT_RULES)
    assert compiled.evaluate(scope) == expected


ERRORS = [
    ("missing + 1", EvalError, "name 'missing' is not defined at this line"),
    ("order.total", EvalError, "is a property; keyhole never runs property code"),
    ("order.note", EvalError, "attribute 'note' is not set"),
    ("order.nope", EvalError, "has no attribute 'nope'"),
    ("order.items[5]", EvalError, "index 5 out of range"),
    ("{'a': 1}['b']", EvalError, "key 'b' not found"),
    ("1 / 0", EvalError, "ZeroDivisionError"),
    ("order.id + 'x'", EvalError, "'+' is not allowed between int and str"),
    ("weird == 1", EvalError, "would call application code"),
    ("weird in [1, 2]", EvalError, "__eq__ or __hash__"),
    ("{weird: 1}", EvalError, "would hash objects"),
    ("str(order)", EvalError, "would call its __str__"),
    ("len(order)", EvalError, "only built-in containers"),
    ("order.id.lower()", EvalError, ".lower() is not available on a int"),
    ("base ** power", EvalError, "could explode"),
    ("'ab' * count", EvalError, "repetition would build more than"),
    ("1 << count", EvalError, "shift by 10000000"),
    ("isinstance(order, 3)", EvalError, "isinstance() needs a class"),
    ("data[key]", RedactedRead, "key 'password' is redacted"),
    ("data.get(key)", RedactedRead, "is redacted"),
    ("sum(big)", StepBudgetExceeded, "more than 10000 evaluator steps"),
    ("amount + 1", EvalError, "Decimal arithmetic reads and changes the thread's decimal context"),
    ("data.values()", RedactedRead, "key 'password' is redacted"),
]


@pytest.mark.parametrize(("source", "error", "message"), ERRORS)
def test_run_time_errors_say_what_went_wrong(source: str, error: type[Exception], message: str) -> None:
    names = {
        "order": ORDER,
        "weird": WithEq(),
        "base": 10,
        "power": 100_000,
        "count": 10_000_000,
        "data": {"password": "hunter2"},
        "key": "password",
        "big": list(range(50_000)),
        "amount": Decimal("1.5"),
    }
    with pytest.raises(error) as raised:
        ev(source, **names)
    assert message in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_boolean_operators_short_circuit() -> None:
    assert ev("order is None or order.id", order=None) is True
    assert ev("order is not None and order.nope", order=None) is False


def test_globals_are_read_after_locals() -> None:
    frame = sys._getframe()
    scope = Scope(frame)
    compiled = compile_expression(check_expression("MODULE_SETTING"), DEFAULT_RULES)
    assert compiled.evaluate(scope) == 7


def test_defaultdict_lookups_never_insert() -> None:
    from collections import defaultdict

    counts: defaultdict[str, int] = defaultdict(int)
    with pytest.raises(EvalError, match="key 'x' not found"):
        ev("counts['x']", counts=counts)
    assert ev("counts.get('x', 3)", counts=counts) == 3
    assert dict(counts) == {}
