"""Property tests: whatever expression a user writes and whatever objects the application holds, keyhole
never runs application code (dunder methods, properties, descriptors, __getattr__, metaclass hooks),
and nothing but keyhole's own EvalError escapes the evaluator."""

from __future__ import annotations

import json
import os
import sys
from types import FrameType
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyhole.agent.core.shipping import encode, finish_event
from keyhole.agent.errors import EvalError
from keyhole.agent.reading.capture import Capturer, NameFilter
from keyhole.agent.reading.evaluator import compile_expression
from keyhole.agent.reading.formatting import format_value
from keyhole.agent.reading.scope import Scope
from keyhole.protocol.errors import ExpressionError
from keyhole.protocol.expression import check_expression
from keyhole.protocol.redaction import DEFAULT_RULES
from tests.agent.traps import CALLS, TRAP_KINDS, Trap, TrapInt, TrapStr, make_trap

NAMES = ["v0", "v1", "v2", "v3"]
ATTRIBUTES = ["a", "b", "prop", "desc", "missing", "real", "args", "items", "keys"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.binary(max_size=10),
)


def _values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.tuples(children, children),
            st.dictionaries(st.one_of(st.text(max_size=5), st.integers(0, 5)), children, max_size=4),
            st.builds(make_trap, st.sampled_from(TRAP_KINDS), children),
            # A plain dict keyed by traps: looking anything up in it must not compare them.
            st.builds(lambda v: {make_trap("Trap", 0): v, 0: v}, children),
            st.builds(lambda v: [make_trap("Trap", v), make_trap("TrapStr", v)], children),
        ),
        max_leaves=8,
    )


values = _values(scalars)

atoms = st.one_of(
    st.sampled_from(NAMES),
    st.sampled_from(["0", "1", "-1", "2.5", "'a'", "'trap-string'", "None", "True", "b'x'", "(1, 2)", "[0, 'a']"]),
    st.sampled_from(["Trap", "TrapInt", "TrapStr"]),
)


def _expressions() -> st.SearchStrategy[str]:
    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.builds(lambda e, a: f"{e}.{a}", inner, st.sampled_from(ATTRIBUTES)),
            st.builds(lambda e, k: f"{e}[{k}]", inner, st.sampled_from(["0", "'a'", "-1", "1:3", "v0", "None"])),
            st.builds(
                lambda a, op, b: f"({a} {op} {b})",
                inner,
                st.sampled_from(
                    ["==", "!=", "<", ">=", "in", "not in", "is", "+", "-", "*", "/", "%", "**", "and", "or", "&", "<<"]
                ),
                inner,
            ),
            st.builds(lambda op, e: f"({op}{e})", st.sampled_from(["not ", "-", "~", "+"]), inner),
            st.builds(
                lambda f, e: f"{f}({e})",
                st.sampled_from(
                    [
                        "len",
                        "abs",
                        "str",
                        "int",
                        "float",
                        "bool",
                        "sum",
                        "any",
                        "all",
                        "sorted",
                        "min",
                        "max",
                        "round",
                        "typename",
                    ]
                ),
                inner,
            ),
            st.builds(
                lambda a, b: f"isinstance({a}, {b})", inner, st.sampled_from(["'Trap'", "Trap", "(Trap, 'x')", "v1"])
            ),
            st.builds(lambda a, b: f"max({a}, {b})", inner, inner),
            st.builds(
                lambda e, m, arg: f"{e}.{m}({arg})",
                inner,
                st.sampled_from(["startswith", "get", "keys", "items", "values", "lower", "count", "split", "find"]),
                st.sampled_from(["", "'a'", "0", "v0"]),
            ),
            st.builds(lambda c, a, b: f"({a} if {c} else {b})", inner, inner, inner),
            st.builds(lambda a, b: f"{{{a}: {b}}}", inner, inner),
            st.builds(lambda a, b: f"{{{a}, {b}}}", inner, inner),
        )

    return st.recursive(atoms, extend, max_leaves=6)


expressions = _expressions()


def _frame(v0: Any, v1: Any, v2: Any, v3: Any) -> FrameType:
    return sys._getframe()


def _clean_run(fn: Any) -> tuple[Any, list[str]]:
    CALLS.clear()
    try:
        result = fn()
    finally:
        seen = list(CALLS)
        CALLS.clear()
    return result, seen


@settings(
    max_examples=int(os.environ.get("KEYHOLE_PROPERTY_EXAMPLES", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(source=expressions, v0=values, v1=values, v2=values, v3=values)
def test_the_evaluator_runs_no_application_code(source: str, v0: Any, v1: Any, v2: Any, v3: Any) -> None:
    try:
        checked = check_expression(source)
    except ExpressionError:
        return  # refusing an expression is always allowed
    compiled = compile_expression(checked, DEFAULT_RULES)
    frame = _frame(v0, v1, v2, v3)
    frame.f_globals.setdefault("Trap", Trap)
    frame.f_globals.setdefault("TrapInt", TrapInt)
    frame.f_globals.setdefault("TrapStr", TrapStr)

    def evaluate() -> Any:
        try:
            return compiled.evaluate(Scope(frame))
        except EvalError as exc:
            return exc

    result, seen = _clean_run(evaluate)
    assert seen == [], f"{source!r} ran application code: {seen}"
    # Whatever came out can be shown without running application code either.
    _, seen = _clean_run(lambda: format_value(result, "", NameFilter(DEFAULT_RULES)))
    assert seen == [], f"formatting the result of {source!r} ran application code: {seen}"


@settings(
    max_examples=int(os.environ.get("KEYHOLE_PROPERTY_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(value=values)
def test_capture_runs_no_application_code_and_produces_json(value: Any) -> None:
    names = NameFilter(DEFAULT_RULES)
    captured, seen = _clean_run(lambda: Capturer(names).fields([("value", value), ("password", value)]))
    assert seen == [], f"capture ran application code: {seen}"
    assert captured["password"] == {"@redacted": "secret"}
    event = {
        "probe": "p",
        "kind": "snapshot",
        "ts": 0.0,
        "thread": 1,
        "frames": [{"file": "f", "line": 1, "function": "f", "locals": captured}],
    }
    line = encode(finish_event(event, 1, ()))
    assert json.loads(line)["frames"][0]["locals"]["password"] == {"@redacted": "secret"}


def test_a_snapshot_of_trap_locals_runs_no_application_code(tmp_path: Any) -> None:
    """End to end: a snapshot probe with a condition and watches, through the agent's thread, to JSON."""
    import importlib

    from keyhole.agent import Agent
    from tests.helpers import Collector, ModuleMaker, line_of, rel

    maker = ModuleMaker(tmp_path)
    try:
        module_name, path = maker.write(
            """
            def handler(request, items, key, num):
                result = 1  # L-here
                return result
            """
        )
        module = importlib.import_module(module_name)
        collector = Collector()
        agent = Agent(collector).start()
        try:
            spec = {
                "id": "p",
                "kind": "snapshot",
                "file": rel(path),
                "line": line_of(path, "L-here"),
                "condition": "num > 3 and key.startswith('trap') and len(items) >= 0",
                "watch": ["request.a", "request.prop", "items[0]", "key == 'x'", "request"],
            }
            assert agent.add_probe(spec).wait() == "installed", [e.get("error") for e in collector.events]
            request, items = make_trap("Trap", {"nested": make_trap("SlotTrap", 1)}), make_trap("TrapList", 2)
            key, num = make_trap("TrapStr", 0), make_trap("TrapInt", 0)
            CALLS.clear()
            assert module.handler(request, items, key, num) == 1
            collector.wait("p", kind=None, where=lambda e: e["kind"] in ("snapshot", "error"))
            assert CALLS == [], CALLS
        finally:
            agent.stop()
    finally:
        maker.cleanup()
    events = [e for e in collector.events if e["probe"] == "p" and e["kind"] in ("snapshot", "error")]
    assert events, collector.events
    json.dumps(collector.events)
