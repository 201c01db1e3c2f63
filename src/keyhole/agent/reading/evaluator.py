"""keyhole's own evaluator for checked expressions: the tree is compiled once into closures.

The input is a tree that keyhole.protocol.expression already checked. Each operation goes through
keyhole.agent.reading's safe_operations, safe_types and safe_attributes, so no application code
runs. Cost is bounded: every syntax node costs one step, and operations that walk a container cost
steps in proportion to its size; an evaluation that passes the budget raises StepBudgetExceeded and
the probe is disabled.

What an expression sees is scope.py; operators are operators.py, the built-in functions
builtin_calls.py, and methods method_calls.py.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from typing import Any

from keyhole.agent.errors import EvalError, RedactedRead, StepBudgetExceeded
from keyhole.agent.reading import decimals, safe_attributes, safe_operations, safe_types
from keyhole.agent.reading.builtin_calls import ARITY, HELPERS
from keyhole.agent.reading.foreign_exceptions import from_application
from keyhole.agent.reading.method_calls import call_method
from keyhole.agent.reading.operators import BINARY_OPERATORS, COMPARISONS, bounded
from keyhole.agent.reading.scope import Scope
from keyhole.protocol.expression import CheckedExpression
from keyhole.protocol.redaction import NAME_CLASS, RedactionRules

_MISSING = safe_types.MISSING


Node = Callable[[Scope], Any]


class CompiledExpression:
    """A checked expression ready to run against a frame."""

    __slots__ = ("_fn", "nodes", "source")

    def __init__(self, source: str, fn: Node, nodes: int) -> None:
        self.source = source
        self._fn = fn
        self.nodes = nodes

    def evaluate(self, scope: Scope) -> Any:
        scope.steps += self.nodes
        if scope.steps > scope.budget:
            raise StepBudgetExceeded(f"expression used more than {scope.budget} evaluator steps")
        try:
            return self._fn(scope)
        except EvalError:
            raise
        except RecursionError:
            raise  # no stack room: the probe skips the hit
        except (ArithmeticError, TypeError, ValueError, LookupError, AttributeError, UnicodeError) as exc:
            if from_application(exc):
                raise
            raise EvalError(f"{type(exc).__name__}: {exc}") from None
        except MemoryError as exc:
            raise EvalError(f"{type(exc).__name__} while evaluating") from None


def compile_expression(
    checked: CheckedExpression, rules: RedactionRules, reveal: tuple[str, ...] = ()
) -> CompiledExpression:
    compiler = _Compiler(rules, NAME_CLASS in reveal)
    return CompiledExpression(checked.source, compiler.node(checked.body), checked.nodes)


class _Compiler:
    def __init__(self, rules: RedactionRules, reveal_secrets: bool) -> None:
        self.rules = rules
        self.reveal_secrets = reveal_secrets

    def node(self, node: ast.expr) -> Node:
        method: Callable[[Any], Node] = getattr(self, f"c_{type(node).__name__}")
        return method(node)

    def c_Constant(self, node: ast.Constant) -> Node:
        value = node.value
        return lambda scope: value

    def c_Name(self, node: ast.Name) -> Node:
        name = node.id

        def lookup(scope: Scope) -> Any:
            value = scope.locals.get(name, _MISSING)
            if value is _MISSING:
                value = scope.frame.f_globals.get(name, _MISSING)
                if value is _MISSING:
                    raise EvalError(f"name {name!r} is not defined at this line")
            return value

        return lookup

    def c_Attribute(self, node: ast.Attribute) -> Node:
        target = self.node(node.value)
        attr = node.attr
        get = safe_attributes.get_attribute
        return lambda scope: get(target(scope), attr)

    def _check_key(self, key: Any) -> None:
        if type(key) is str and not self.reveal_secrets and self.rules.name_is_secret(key):
            raise RedactedRead(f"key {safe_operations.describe(key)} is redacted (class {NAME_CLASS})")

    def c_Subscript(self, node: ast.Subscript) -> Node:
        target = self.node(node.value)
        key_fn = self.node(node.slice)
        check = self._check_key

        def subscript(scope: Scope) -> Any:
            obj = target(scope)
            key = key_fn(scope)
            check(key)
            if safe_types.builtin_base(type(obj)) is dict:
                scope.charge(safe_operations.size(obj) // 16)  # the key check reads every key: charge first
            result = safe_operations.get_item(obj, key)
            if type(key) is slice:
                bounded(result, scope)
            return result

        return subscript

    def c_Slice(self, node: ast.Slice) -> Node:
        parts = [self.node(p) if p is not None else None for p in (node.lower, node.upper, node.step)]
        return lambda scope: slice(*(p(scope) if p is not None else None for p in parts))

    def c_BoolOp(self, node: ast.BoolOp) -> Node:
        values = [self.node(v) for v in node.values]
        truth = safe_operations.truth
        if isinstance(node.op, ast.And):

            def both(scope: Scope) -> Any:
                result: Any = None
                for fn in values:
                    result = fn(scope)
                    if not truth(result):
                        return result
                return result

            return both

        def either(scope: Scope) -> Any:
            result: Any = None
            for fn in values:
                result = fn(scope)
                if truth(result):
                    return result
            return result

        return either

    def c_UnaryOp(self, node: ast.UnaryOp) -> Node:
        operand = self.node(node.operand)
        op = node.op
        if isinstance(op, ast.Not):
            return lambda scope: not safe_operations.truth(operand(scope))

        def unary(scope: Scope) -> Any:
            value = operand(scope)
            if isinstance(op, ast.Invert):
                if id(type(value)) not in safe_types.INT_IDS:
                    raise EvalError(f"'~' needs an integer (got {safe_types.type_name(value)})")
                return ~int(value)  # ~True warns (DeprecationWarning) and warnings would reach stderr
            if not safe_operations.is_number(value):
                raise EvalError(f"unary minus or plus needs a number (got {safe_types.type_name(value)})")
            return -value if isinstance(op, ast.USub) else +value

        return unary

    def c_BinOp(self, node: ast.BinOp) -> Node:
        left = self.node(node.left)
        right = self.node(node.right)
        apply = BINARY_OPERATORS[type(node.op)]
        return lambda scope: apply(left(scope), right(scope), scope)

    def c_Compare(self, node: ast.Compare) -> Node:
        left = self.node(node.left)
        ops = [(COMPARISONS[type(op)], self.node(c)) for op, c in zip(node.ops, node.comparators, strict=True)]
        if len(ops) == 1:
            ((compare, right),) = ops
            return lambda scope: compare(left(scope), right(scope), scope)

        def chain(scope: Scope) -> bool:
            a = left(scope)
            for compare, fn in ops:
                b = fn(scope)
                if not compare(a, b, scope):
                    return False
                a = b
            return True

        return chain

    def c_IfExp(self, node: ast.IfExp) -> Node:
        test, body, orelse = self.node(node.test), self.node(node.body), self.node(node.orelse)
        return lambda scope: body(scope) if safe_operations.truth(test(scope)) else orelse(scope)

    def c_Tuple(self, node: ast.Tuple) -> Node:
        elts = [self.node(e) for e in node.elts]
        return lambda scope: tuple(e(scope) for e in elts)

    def c_List(self, node: ast.List) -> Node:
        elts = [self.node(e) for e in node.elts]
        return lambda scope: [e(scope) for e in elts]

    def c_Set(self, node: ast.Set) -> Node:
        elts = [self.node(e) for e in node.elts]

        def build(scope: Scope) -> Any:
            values = [e(scope) for e in elts]
            if not all(safe_operations.is_plain(v) for v in values):
                raise EvalError("a set literal would hash objects with application __hash__")
            return set(values)

        return build

    def c_Dict(self, node: ast.Dict) -> Node:
        keys = [self.node(k) for k in node.keys if k is not None]
        values = [self.node(v) for v in node.values]

        def build(scope: Scope) -> Any:
            ks = [k(scope) for k in keys]
            if not all(safe_operations.is_plain(k) for k in ks):
                raise EvalError("a dict literal would hash objects with application __hash__")
            return dict(zip(ks, [v(scope) for v in values], strict=True))

        return build

    def c_Call(self, node: ast.Call) -> Node:
        args = [self.node(a) for a in node.args]
        func = node.func
        if isinstance(func, ast.Name):
            name = func.id
            helper = HELPERS[name]
            low, high = ARITY[name]
            if not low <= len(args) <= high:
                raise EvalError(f"{name}() takes {low}{'' if low == high else f' to {high}'} argument(s)")
            return lambda scope: helper([a(scope) for a in args], scope)
        assert isinstance(func, ast.Attribute)
        receiver = self.node(func.value)
        method = func.attr
        check = self._check_key

        def method_call(scope: Scope) -> Any:
            return call_method(receiver(scope), method, [a(scope) for a in args], scope, check)

        return method_call


def as_metric_value(value: Any) -> float | None:
    """The float a metric summarises: from ints, floats and Decimals (by their text), finite only."""
    try:
        if safe_operations.is_number(value) and not safe_types.derives(value, complex):
            number = float(value)
        elif decimals.decimal_base(type(value)) is not None:
            number = decimals.to_float(value)
        else:
            return None
    except (ArithmeticError, ValueError, TypeError):
        return None
    return number if math.isfinite(number) else None
