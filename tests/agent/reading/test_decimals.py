"""Decimals are read, compared and formatted without touching the application's decimal context."""

from __future__ import annotations

import contextvars
import decimal
import threading
from decimal import Decimal
from typing import Any

import pytest

from keyhole.agent import Agent
from keyhole.agent.errors import EvalError
from tests.agent.reading.test_evaluator import ev
from tests.helpers import Collector, ModuleMaker, line_of, rel


def _has_decimal_context() -> bool:
    return any(var.name == "decimal_context" for var in contextvars.copy_context())


def _in_fresh_context(fn: Any) -> Any:
    return contextvars.Context().run(fn)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("amount > 100", False),
        ("amount == 1.5", True),
        ("amount < big", True),
        ("amount != 2", True),
        ("str(amount)", "1.5"),
        ("int(big)", 12345678901234567890),
        ("float(amount) * 2", 3.0),
    ],
)
def test_decimal_expressions_leave_no_decimal_context_behind(source: str, expected: Any) -> None:
    names = {"amount": Decimal("1.5"), "big": Decimal("12345678901234567890.9")}  # made with a context

    def run() -> tuple[Any, bool]:
        value = ev(source, **names)
        return value, _has_decimal_context()

    value, created = _in_fresh_context(run)
    assert value == expected
    assert not created


def test_comparing_with_a_float_sets_no_flag_in_the_applications_context() -> None:
    amount = Decimal("1.5")

    def run() -> dict[str, bool]:
        decimal.getcontext().clear_flags()
        assert ev("amount == 1.5 and amount < 2.5", amount=amount) is True
        return {name: bool(flag) for name, flag in decimal.getcontext().flags.items() if flag}

    assert _in_fresh_context(run) == {}
    # The same comparison in Python itself raises the flag: the test above would notice.
    with decimal.localcontext() as own:
        own.clear_flags()
        assert Decimal("1.5") < 2.5
        assert own.flags[decimal.FloatOperation]


def test_undefined_decimal_comparisons_are_errors_not_exceptions() -> None:
    with pytest.raises(EvalError, match="is undefined for Decimals"):
        ev("amount < 1", amount=Decimal("NaN"))
    with pytest.raises(EvalError, match="a Decimal compares with a Decimal, an int or a float here, not a str"):
        ev("amount == '1.5'", amount=Decimal("1.5"))
    with pytest.raises(EvalError, match="NaN or Infinity"):
        ev("int(amount)", amount=Decimal("Infinity"))
    with pytest.raises(EvalError, match="more than 4300 digits"):
        ev("int(amount)", amount=Decimal("1E+999999"))
    with pytest.raises(EvalError, match="__eq__ or __hash__"):
        ev("1 in amounts", amounts=[Decimal(1)])
    with pytest.raises(EvalError, match="Decimal arithmetic"):
        ev("amount * 2", amount=Decimal("1.5"))


SOURCE = """
from decimal import Decimal

def charge(total):
    seen = total  # L-charge
    return seen
"""


def test_a_probe_on_decimals_does_not_create_or_flag_the_threads_context(
    modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    module, path = modules.load(SOURCE)
    line = line_of(path, "L-charge")
    agent.add_probe(
        {
            "id": "log",
            "kind": "log",
            "file": rel(path),
            "line": line,
            "condition": "total > 100.5",
            "template": "total={total:.2f} int={int(total)} raw={total}",
        }
    ).wait()
    agent.add_probe({"id": "snap", "kind": "snapshot", "file": rel(path), "line": line}).wait()
    seen: list[bool] = []

    total = Decimal("250.125")  # made here: constructing a Decimal from text creates a context

    def application_thread() -> None:
        module.charge(total)
        seen.append(_has_decimal_context())

    thread = threading.Thread(target=application_thread)
    thread.start()
    thread.join()
    assert collector.wait("log", "log")[0]["message"] == "total=250.12 int=250 raw=250.125"
    frames = collector.wait("snap", "snapshot")[0]["frames"]
    assert frames[0]["locals"]["total"] == {"@type": "decimal.Decimal", "@value": "250.125"}
    assert seen == [False]
