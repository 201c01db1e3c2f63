"""keyhole's own evaluator for checked expressions: the tree is compiled once into closures.

The input is a tree that keyhole.protocol.expression already checked. Each operation goes through
keyhole.agent.reading.safe_access, so no application code runs. Cost is bounded: every syntax node costs
one step, and operations that walk a container cost steps in proportion to its size; an evaluation
that passes the budget raises StepBudgetExceeded and the probe is disabled.
"""

from __future__ import annotations

import ast
import math
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

from keyhole.agent.errors import EvalError, RedactedRead, StepBudgetExceeded
from keyhole.agent.reading import decimals
from keyhole.agent.reading import safe_access as sa
from keyhole.protocol.expression import DICT_METHODS, MAX_EXPONENT, MAX_REPEAT, STRING_METHODS, CheckedExpression
from keyhole.protocol.limits import EXPRESSION_STEP_BUDGET
from keyhole.protocol.redaction import NAME_CLASS, RedactionRules

MAX_RESULT_ITEMS = 100_000
_MISSING = sa.MISSING


class _ApplicationMapping:
    """Stands in for locals that are an application's own mapping (a class body whose metaclass has
    __prepare__, code run by exec with a mapping): reading them would run that mapping's code."""

    def get(self, name: str, default: Any = None) -> Any:
        raise EvalError(
            "this frame's locals are an application mapping (a class body or exec); keyhole does not read them"
        )

    def items(self) -> Any:
        return ()


OPAQUE_LOCALS = _ApplicationMapping()


def _locals_type() -> type:
    return type(sys._getframe().f_locals)  # dict, or 3.13's FrameLocalsProxy


_LOCALS_TYPE_IDS = frozenset({id(dict), id(_locals_type())})


def frame_locals_of(frame: FrameType) -> Any:
    """The frame's locals if they are CPython's own (a dict or a FrameLocalsProxy), else a stand-in."""
    local_vars = frame.f_locals
    return local_vars if id(type(local_vars)) in _LOCALS_TYPE_IDS else OPAQUE_LOCALS


class Scope:
    """What an expression can see: the frame's locals, then its globals. Lives for one probe hit."""

    __slots__ = ("budget", "frame", "locals", "steps")

    def __init__(self, frame: FrameType, budget: int = EXPRESSION_STEP_BUDGET) -> None:
        self.frame = frame
        self.locals: Any = frame_locals_of(frame)
        self.steps = 0
        self.budget = budget

    def charge(self, steps: int) -> None:
        self.steps += steps
        if self.steps > self.budget:
            raise StepBudgetExceeded(f"expression used more than {self.budget} evaluator steps")


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
        except (ArithmeticError, TypeError, ValueError, LookupError, AttributeError, UnicodeError) as exc:
            raise EvalError(f"{type(exc).__name__}: {exc}") from None
        except (RecursionError, MemoryError) as exc:
            raise EvalError(f"{type(exc).__name__} while evaluating") from None


def compile_expression(
    checked: CheckedExpression, rules: RedactionRules, reveal: tuple[str, ...] = ()
) -> CompiledExpression:
    compiler = _Compiler(rules, NAME_CLASS in reveal)
    return CompiledExpression(checked.source, compiler.node(checked.body), checked.nodes)


def _bounded(value: Any, scope: Scope) -> Any:
    """Charge for a freshly built container or string, refusing results that could exhaust memory."""
    if id(type(value)) in sa.SEQUENCE_IDS:
        n = len(value)
        if n > MAX_RESULT_ITEMS:
            raise EvalError(f"result would hold {n} items (the limit is {MAX_RESULT_ITEMS})")
        scope.charge(n // 64)
    return value


def _refuse_decimal(a: Any, b: Any) -> None:
    if decimals.decimal_base(type(a)) is not None or decimals.decimal_base(type(b)) is not None:
        raise EvalError(
            "Decimal arithmetic reads and changes the thread's decimal context; compare Decimals, "
            "or convert with float() first"
        )


def _numbers(a: Any, b: Any, op: str) -> None:
    if not (sa.is_number(a) and sa.is_number(b)):
        _refuse_decimal(a, b)
        raise EvalError(
            f"'{op}' needs numbers here (got {sa.type_name(a)} and {sa.type_name(b)}); "
            "keyhole does not run application operators"
        )


def _add(a: Any, b: Any, scope: Scope) -> Any:
    ta, tb = type(a), type(b)
    if sa.is_number(a) and sa.is_number(b):
        return a + b
    _refuse_decimal(a, b)
    if ta is tb and id(ta) in sa.SEQUENCE_IDS:
        if len(a) + len(b) > MAX_RESULT_ITEMS:
            raise EvalError(f"result would hold more than {MAX_RESULT_ITEMS} items")
        return _bounded(a + b, scope)
    raise EvalError(f"'+' is not allowed between {sa.type_name(a)} and {sa.type_name(b)}")


def _mul(a: Any, b: Any, scope: Scope) -> Any:
    if sa.is_number(a) and sa.is_number(b):
        return a * b
    _refuse_decimal(a, b)
    seq, count = (a, b) if id(type(b)) in sa.INT_IDS else (b, a)
    if id(type(seq)) in sa.SEQUENCE_IDS and id(type(count)) in sa.INT_IDS:
        if count > MAX_REPEAT or len(seq) * max(count, 0) > MAX_RESULT_ITEMS:
            raise EvalError(f"repetition would build more than {MAX_RESULT_ITEMS} items")
        return _bounded(seq * count, scope)
    raise EvalError(f"'*' is not allowed between {sa.type_name(a)} and {sa.type_name(b)}")


def _pow(a: Any, b: Any, scope: Scope) -> Any:
    _numbers(a, b, "**")
    if sa.derives(a, int) and sa.derives(b, int):
        if abs(b) > MAX_EXPONENT or (b > 0 and int.bit_length(a) * b > 1_000_000):
            raise EvalError(f"{sa.type_name(a)} ** {sa.describe(b)} could explode (exponent limit {MAX_EXPONENT})")
    elif (sa.derives(b, int) or sa.derives(b, float)) and abs(b) > MAX_EXPONENT and sa.derives(a, int) and abs(a) > 1:
        raise EvalError(f"exponent {sa.describe(b)} could explode (limit {MAX_EXPONENT})")
    return a**b


def _ints(a: Any, b: Any, op: str) -> None:
    if id(type(a)) not in sa.INT_IDS or id(type(b)) not in sa.INT_IDS:
        raise EvalError(f"'{op}' needs integers (got {sa.type_name(a)} and {sa.type_name(b)})")


def _lshift(a: Any, b: Any, scope: Scope) -> Any:
    _ints(a, b, "<<")
    if b > MAX_EXPONENT or a.bit_length() + b > 1_000_000:
        raise EvalError(f"shift by {sa.describe(b)} could explode (limit {MAX_EXPONENT})")
    return a << b


def _binop(op: str, fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any, Scope], Any]:
    def apply(a: Any, b: Any, scope: Scope) -> Any:
        _numbers(a, b, op)
        return fn(a, b)

    return apply


def _intop(op: str, fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any, Scope], Any]:
    def apply(a: Any, b: Any, scope: Scope) -> Any:
        _ints(a, b, op)
        return fn(a, b)

    return apply


_BINOPS: dict[type[ast.operator], Callable[[Any, Any, Scope], Any]] = {
    ast.Add: _add,
    ast.Mult: _mul,
    ast.Pow: _pow,
    ast.LShift: _lshift,
    ast.Sub: _binop("-", lambda a, b: a - b),
    ast.Div: _binop("/", lambda a, b: a / b),
    ast.FloorDiv: _binop("//", lambda a, b: a // b),
    ast.Mod: _binop("%", lambda a, b: a % b),
    ast.RShift: _intop(">>", lambda a, b: a >> b),
    ast.BitAnd: _intop("&", lambda a, b: a & b),
    ast.BitOr: _intop("|", lambda a, b: a | b),
    ast.BitXor: _intop("^", lambda a, b: a ^ b),
}


def _op_is(a: Any, b: Any, scope: Scope) -> bool:
    return a is b


def _op_is_not(a: Any, b: Any, scope: Scope) -> bool:
    return a is not b


def _op_eq(a: Any, b: Any, scope: Scope) -> bool:
    return sa.equals(a, b)


def _op_ne(a: Any, b: Any, scope: Scope) -> bool:
    return not sa.equals(a, b)


def _op_in(a: Any, b: Any, scope: Scope) -> bool:
    if sa.builtin_base(type(b)) is not None:
        scope.charge(sa.size(b) // 16 + 1)  # before the scan, not after
    found, _ = sa.contains(b, a)
    return found


def _op_not_in(a: Any, b: Any, scope: Scope) -> bool:
    return not _op_in(a, b, scope)


def _ordering(symbol: str) -> Callable[[Any, Any, Scope], bool]:
    def compare(a: Any, b: Any, scope: Scope) -> bool:
        return sa.order(symbol, a, b)

    return compare


_COMPARISONS: dict[type[ast.cmpop], Callable[[Any, Any, Scope], bool]] = {
    ast.Is: _op_is,
    ast.IsNot: _op_is_not,
    ast.Eq: _op_eq,
    ast.NotEq: _op_ne,
    ast.In: _op_in,
    ast.NotIn: _op_not_in,
    ast.Lt: _ordering("<"),
    ast.LtE: _ordering("<="),
    ast.Gt: _ordering(">"),
    ast.GtE: _ordering(">="),
}


def _elements(value: Any, scope: Scope) -> list[Any]:
    scope.charge(sa.size(value) // 4 + 1)  # before copying
    return list(sa.iterate(value))


def _minmax(name: str, args: list[Any], scope: Scope) -> Any:
    items = _elements(args[0], scope) if len(args) == 1 else args
    if not items:
        raise EvalError(f"{name}() of an empty container")
    if not all(sa.is_plain(v, 1, ("__lt__", "__gt__", "__eq__")) for v in items):
        raise EvalError(f"{name}() would compare objects with application comparison methods")
    return min(items) if name == "min" else max(items)


def _helper_len(args: list[Any], scope: Scope) -> Any:
    return sa.size(args[0])


def _helper_abs(args: list[Any], scope: Scope) -> Any:
    if not sa.is_number(args[0]):
        raise EvalError(f"abs() needs a number (got {sa.type_name(args[0])})")
    return abs(args[0])


def _helper_round(args: list[Any], scope: Scope) -> Any:
    if not sa.is_number(args[0]) or (len(args) > 1 and type(args[1]) is not int):
        raise EvalError("round() needs a number and an optional integer")
    return round(*args)


def _helper_sum(args: list[Any], scope: Scope) -> Any:
    items = _elements(args[0], scope)
    if not all(sa.is_number(v) for v in items):
        raise EvalError("sum() needs numbers")
    return sum(items)


def _helper_any(args: list[Any], scope: Scope) -> Any:
    return any(sa.truth(v) for v in _elements(args[0], scope))


def _helper_all(args: list[Any], scope: Scope) -> Any:
    return all(sa.truth(v) for v in _elements(args[0], scope))


def _helper_sorted(args: list[Any], scope: Scope) -> Any:
    items = _elements(args[0], scope)
    if not all(sa.is_plain(v, 1, ("__lt__", "__gt__", "__eq__")) for v in items):
        raise EvalError("sorted() would compare objects with application comparison methods")
    scope.charge(len(items))
    return sorted(items)


def _helper_isinstance(args: list[Any], scope: Scope) -> Any:
    return sa.isinstance_nominal(args[0], args[1])


def _convert(kind: type) -> Callable[[list[Any], Scope], Any]:
    def convert(args: list[Any], scope: Scope) -> Any:
        value = args[0]
        if kind is str:
            shown = decimals.text(value)
            if shown is not None:
                return shown
            if not sa.is_plain(value, 0):
                raise EvalError(
                    f"str() of a {sa.type_name(value)} would call its __str__; convert one of its fields instead"
                )
            return sa.plain_str(value)
        if sa.is_text(value):
            # The string data itself: a subclass's __str__ or __bytes__ never runs.
            text = str.__str__(value) if sa.derives(value, str) else bytes.__getitem__(value, slice(None))
            if len(text) > 4300:
                raise EvalError(f"{kind.__name__}() of a string longer than 4300 characters")
            return kind(text)
        if sa.is_number(value):
            return kind(value)
        if decimals.decimal_base(type(value)) is not None:
            try:
                return decimals.to_float(value) if kind is float else decimals.to_int(value)
            except ArithmeticError as exc:  # the decimal module signals (a signalling NaN)
                raise EvalError(f"{kind.__name__}() of {sa.describe(value)}: {type(exc).__name__}") from None
        raise EvalError(
            f"{kind.__name__}() of a {sa.type_name(value)} would call its conversion methods; "
            "convert one of its fields instead"
        )

    return convert


def _helper_bool(args: list[Any], scope: Scope) -> Any:
    return sa.truth(args[0])


def _helper_typename(args: list[Any], scope: Scope) -> Any:
    return sa.type_name(args[0])


_HELPERS: dict[str, Callable[[list[Any], Scope], Any]] = {
    "len": _helper_len,
    "min": lambda args, scope: _minmax("min", args, scope),
    "max": lambda args, scope: _minmax("max", args, scope),
    "abs": _helper_abs,
    "round": _helper_round,
    "sum": _helper_sum,
    "any": _helper_any,
    "all": _helper_all,
    "sorted": _helper_sorted,
    "isinstance": _helper_isinstance,
    "int": _convert(int),
    "float": _convert(float),
    "str": _convert(str),
    "bool": _helper_bool,
    "typename": _helper_typename,
}
_ARITY = {
    "len": (1, 1),
    "abs": (1, 1),
    "round": (1, 2),
    "sum": (1, 1),
    "any": (1, 1),
    "all": (1, 1),
    "sorted": (1, 1),
    "isinstance": (2, 2),
    "int": (1, 1),
    "float": (1, 1),
    "str": (1, 1),
    "bool": (1, 1),
    "typename": (1, 1),
    "min": (1, 8),
    "max": (1, 8),
}

_TEXT_ARG_IDS = sa.type_ids(str, bytes, int, bool)
_TEXT_IDS = sa.type_ids(str, bytes)


def _text_args(args: list[Any]) -> None:
    for arg in args:
        if id(type(arg)) in _TEXT_ARG_IDS or arg is None:
            continue
        if type(arg) is tuple and all(id(type(a)) in _TEXT_IDS for a in arg):
            continue
        raise EvalError(f"string method arguments must be strings or integers (got {sa.type_name(arg)})")


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
        get = sa.get_attribute
        return lambda scope: get(target(scope), attr)

    def _check_key(self, key: Any) -> None:
        if type(key) is str and not self.reveal_secrets and self.rules.name_is_secret(key):
            raise RedactedRead(f"key {sa.describe(key)} is redacted (class {NAME_CLASS})")

    def c_Subscript(self, node: ast.Subscript) -> Node:
        target = self.node(node.value)
        key_fn = self.node(node.slice)
        check = self._check_key

        def subscript(scope: Scope) -> Any:
            obj = target(scope)
            key = key_fn(scope)
            check(key)
            if sa.builtin_base(type(obj)) is dict:
                scope.charge(sa.size(obj) // 16)  # the key check reads every key: charge first
            result = sa.get_item(obj, key)
            if type(key) is slice:
                _bounded(result, scope)
            return result

        return subscript

    def c_Slice(self, node: ast.Slice) -> Node:
        parts = [self.node(p) if p is not None else None for p in (node.lower, node.upper, node.step)]
        return lambda scope: slice(*(p(scope) if p is not None else None for p in parts))

    def c_BoolOp(self, node: ast.BoolOp) -> Node:
        values = [self.node(v) for v in node.values]
        truth = sa.truth
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
            return lambda scope: not sa.truth(operand(scope))

        def unary(scope: Scope) -> Any:
            value = operand(scope)
            if isinstance(op, ast.Invert):
                if id(type(value)) not in sa.INT_IDS:
                    raise EvalError(f"'~' needs an integer (got {sa.type_name(value)})")
                return ~int(value)  # ~True warns (DeprecationWarning) and warnings would reach stderr
            if not sa.is_number(value):
                raise EvalError(f"unary minus or plus needs a number (got {sa.type_name(value)})")
            return -value if isinstance(op, ast.USub) else +value

        return unary

    def c_BinOp(self, node: ast.BinOp) -> Node:
        left = self.node(node.left)
        right = self.node(node.right)
        apply = _BINOPS[type(node.op)]
        return lambda scope: apply(left(scope), right(scope), scope)

    def c_Compare(self, node: ast.Compare) -> Node:
        left = self.node(node.left)
        ops = [(_COMPARISONS[type(op)], self.node(c)) for op, c in zip(node.ops, node.comparators, strict=True)]
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
        return lambda scope: body(scope) if sa.truth(test(scope)) else orelse(scope)

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
            if not all(sa.is_plain(v) for v in values):
                raise EvalError("a set literal would hash objects with application __hash__")
            return set(values)

        return build

    def c_Dict(self, node: ast.Dict) -> Node:
        keys = [self.node(k) for k in node.keys if k is not None]
        values = [self.node(v) for v in node.values]

        def build(scope: Scope) -> Any:
            ks = [k(scope) for k in keys]
            if not all(sa.is_plain(k) for k in ks):
                raise EvalError("a dict literal would hash objects with application __hash__")
            return dict(zip(ks, [v(scope) for v in values], strict=True))

        return build

    def c_Call(self, node: ast.Call) -> Node:
        args = [self.node(a) for a in node.args]
        func = node.func
        if isinstance(func, ast.Name):
            name = func.id
            helper = _HELPERS[name]
            low, high = _ARITY[name]
            if not low <= len(args) <= high:
                raise EvalError(f"{name}() takes {low}{'' if low == high else f' to {high}'} argument(s)")
            return lambda scope: helper([a(scope) for a in args], scope)
        assert isinstance(func, ast.Attribute)
        receiver = self.node(func.value)
        method = func.attr
        check = self._check_key

        def call_method(scope: Scope) -> Any:
            obj = receiver(scope)
            values = [a(scope) for a in args]
            base = sa.builtin_base(type(obj))
            if method in STRING_METHODS and base in (str, bytes):
                _text_args(values)
                scope.charge(sa.size(obj) // 64 + 1)
                return _bounded(getattr(base, method)(obj, *values), scope)
            if method in DICT_METHODS and base is dict:
                if method == "get":
                    if not 1 <= len(values) <= 2:
                        raise EvalError(".get() takes a key and an optional default")
                    check(values[0])
                    try:
                        return sa.dict_get(obj, values[0])
                    except sa.KeyMissing:
                        return values[1] if len(values) == 2 else None
                if values:
                    raise EvalError(f".{method}() takes no arguments")
                scope.charge(dict.__len__(obj) // 4 + 1)
                for key in dict.keys(obj):  # values as well: a secret's value must not come out unnamed
                    check(key)
                return list(getattr(dict, method)(obj))
            if method == "count" and base in (list, tuple):
                if len(values) != 1:
                    raise EvalError(".count() takes one argument")
                found = [v for v in sa.iterate(obj)]
                scope.charge(len(found) // 4 + 1)
                if not sa.all_plain(found) or not sa.is_plain(values[0]):
                    raise EvalError(".count() would compare objects with application __eq__")
                return found.count(values[0])
            raise EvalError(f".{method}() is not available on a {sa.type_name(obj)}")

        return call_method


def as_metric_value(value: Any) -> float | None:
    """The float a metric summarises: from ints, floats and Decimals (by their text), finite only."""
    try:
        if sa.is_number(value) and not sa.derives(value, complex):
            number = float(value)
        elif decimals.decimal_base(type(value)) is not None:
            number = decimals.to_float(value)
        else:
            return None
    except (ArithmeticError, ValueError, TypeError):
        return None
    return number if math.isfinite(number) else None
