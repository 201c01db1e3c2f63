"""The safe expression language: a subset of Python expression syntax, checked before any use.

Conditions, watch expressions, metric values and log template fields are parsed with `ast` and
checked here, at the time a probe is created; the agent then runs the checked tree with its own
evaluator (keyhole.agent.reading.evaluator), never with eval. The gateway uses this same check.

Allowed: names, literals, attribute reads, subscripts and slices, comparisons, ``and``/``or``/``not``,
arithmetic, conditional expressions, and calls of a fixed set of pure helpers (``len``, ``min``,
``max``, ``abs``, ``isinstance``, ...) and of a fixed set of methods of built-in types
(``startswith``, ``lower``, ``get``, ...). Everything else is refused with the reason.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from keyhole.protocol.errors import ExpressionError
from keyhole.protocol.limits import EXPRESSION_MAX_NODES, EXPRESSION_MAX_SOURCE
from keyhole.protocol.quiet_compile import parse_expression
from keyhole.protocol.redaction import NAME_CLASS, RedactionRules

HELPERS: frozenset[str] = frozenset(
    {
        "len",
        "min",
        "max",
        "abs",
        "isinstance",
        "round",
        "sum",
        "any",
        "all",
        "sorted",
        "int",
        "float",
        "str",
        "bool",
        "typename",
    }
)
# Methods an expression may call, by the built-in type that must receive them.
STRING_METHODS: frozenset[str] = frozenset(
    {
        "startswith", "endswith", "lower", "upper", "strip", "lstrip", "rstrip", "find", "count",
        "split", "isdigit", "isalpha", "isalnum", "isspace",
    }
)  # fmt: skip
DICT_METHODS: frozenset[str] = frozenset({"get", "keys", "values", "items"})
METHODS: frozenset[str] = STRING_METHODS | DICT_METHODS
CONSTANT_NAMES = frozenset({"True", "False", "None"})

MAX_LITERAL_CHARS = 1_000
MAX_INT_DIGITS = 100
MAX_DISPLAY_ITEMS = 64
MAX_DEPTH = 32
MAX_EXPONENT = 10_000
MAX_REPEAT = 10_000
MAX_TEMPLATE_FIELDS = 32
MAX_TEMPLATE_CHARS = 4_096
# The standard format specification mini-language: [[fill]align][sign][z][#][0][width][grouping][.precision][type]
_FORMAT_SPEC = re.compile(r"(?:.?[<>=^])?[+\- ]?z?#?0?\d{0,3}[,_]?(?:\.\d{1,3})?[bcdeEfFgGnosxX%]?")

_REFUSED: dict[type[ast.AST], str] = {
    ast.Lambda: "lambdas are not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "generator expressions are not allowed",
    ast.NamedExpr: "assignment expressions (:=) are not allowed",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
    ast.Starred: "starred expressions are not allowed",
    ast.JoinedStr: "f-strings are not allowed (use a log template instead)",
    ast.FormattedValue: "f-strings are not allowed (use a log template instead)",
}

_BINOPS = (
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.FloorDiv,
    ast.Mod,
    ast.Pow,
    ast.LShift,
    ast.RShift,
    ast.BitAnd,
    ast.BitOr,
    ast.BitXor,
)


@dataclass(frozen=True)
class CheckedExpression:
    """An expression that passed the check; `body` is the tree the agent's evaluator compiles."""

    source: str
    body: ast.expr
    nodes: int


@dataclass(frozen=True)
class TemplateField:
    expression: CheckedExpression
    format_spec: str


TemplatePart = str | TemplateField


def _dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


class _Checker:
    def __init__(self, source: str, what: str, rules: RedactionRules, reveal: tuple[str, ...]) -> None:
        self.source = source
        self.what = what
        self.rules = rules
        self.reveal_secrets = NAME_CLASS in reveal
        self.nodes = 0

    def fail(self, reason: str) -> ExpressionError:
        return ExpressionError(f"{self.what} {self.source!r}: {reason}")

    def secret(self, name: str, shown: str) -> None:
        if not self.reveal_secrets and self.rules.name_is_secret(name):
            raise self.fail(
                f"reads {shown!r}, which keyhole redacts (class {NAME_CLASS}); remove it from the expression"
            )

    def check(self, node: ast.AST, depth: int) -> None:
        self.nodes += 1
        if self.nodes > EXPRESSION_MAX_NODES:
            raise self.fail(f"is too large (more than {EXPRESSION_MAX_NODES} syntax nodes)")
        if depth > MAX_DEPTH:
            raise self.fail(f"is nested too deeply (more than {MAX_DEPTH} levels)")
        refused = _REFUSED.get(type(node))
        if refused is not None:
            raise self.fail(refused)
        handler = getattr(self, f"visit_{type(node).__name__}", None)
        if handler is None:
            raise self.fail(f"{type(node).__name__} syntax is not allowed in keyhole expressions")
        handler(node, depth + 1)

    # --- leaves ---
    def visit_Constant(self, node: ast.Constant, depth: int) -> None:
        value = node.value
        if isinstance(value, str | bytes) and len(value) > MAX_LITERAL_CHARS:
            raise self.fail(f"literal is too long (more than {MAX_LITERAL_CHARS} characters)")
        if isinstance(value, int) and not isinstance(value, bool) and len(str(abs(value))) > MAX_INT_DIGITS:
            raise self.fail(f"integer literal is too large (more than {MAX_INT_DIGITS} digits)")
        if value is Ellipsis:
            raise self.fail("... is not allowed")

    def visit_Name(self, node: ast.Name, depth: int) -> None:
        if not isinstance(node.ctx, ast.Load):
            raise self.fail("assignment is not allowed")
        if _dunder(node.id):
            raise self.fail(f"dunder name {node.id!r} is not allowed")
        self.secret(node.id, node.id)

    # --- structure ---
    def visit_Attribute(self, node: ast.Attribute, depth: int) -> None:
        if not isinstance(node.ctx, ast.Load):
            raise self.fail("assignment is not allowed")
        if _dunder(node.attr):
            raise self.fail(f"dunder attribute {node.attr!r} is not allowed")
        self.secret(node.attr, ast.unparse(node))
        self.check(node.value, depth)

    def visit_Subscript(self, node: ast.Subscript, depth: int) -> None:
        if not isinstance(node.ctx, ast.Load):
            raise self.fail("assignment is not allowed")
        key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            self.secret(key.value, ast.unparse(node))
        self.check(node.value, depth)
        self.check(key, depth)

    def visit_Slice(self, node: ast.Slice, depth: int) -> None:
        for part in (node.lower, node.upper, node.step):
            if part is not None:
                self.check(part, depth)

    def visit_BoolOp(self, node: ast.BoolOp, depth: int) -> None:
        for value in node.values:
            self.check(value, depth)

    def visit_UnaryOp(self, node: ast.UnaryOp, depth: int) -> None:
        self.check(node.operand, depth)

    def visit_BinOp(self, node: ast.BinOp, depth: int) -> None:
        if not isinstance(node.op, _BINOPS):
            raise self.fail(f"operator {type(node.op).__name__} is not allowed")
        right = node.right
        constant = right.value if isinstance(right, ast.Constant) else None
        if isinstance(node.op, ast.Pow) and isinstance(constant, int | float) and abs(constant) > MAX_EXPONENT:
            raise self.fail(f"exponent {constant} could explode (the limit is {MAX_EXPONENT})")
        if isinstance(node.op, ast.Pow) and any(
            isinstance(n, ast.BinOp) and isinstance(n.op, ast.Pow) for n in ast.walk(right)
        ):
            raise self.fail("a power in an exponent could explode; compute it in steps")
        if isinstance(node.op, ast.LShift) and isinstance(constant, int) and constant > MAX_EXPONENT:
            raise self.fail(f"shift by {constant} could explode (the limit is {MAX_EXPONENT})")
        if isinstance(node.op, ast.Mult):
            for a, b in ((node.left, right), (right, node.left)):
                if (
                    isinstance(a, ast.Constant | ast.List | ast.Tuple)
                    and not (isinstance(a, ast.Constant) and isinstance(a.value, int | float | complex))
                    and isinstance(b, ast.Constant)
                    and isinstance(b.value, int)
                    and b.value > MAX_REPEAT
                ):
                    raise self.fail(f"repetition by {b.value} could explode (the limit is {MAX_REPEAT})")
        self.check(node.left, depth)
        self.check(right, depth)

    def visit_Compare(self, node: ast.Compare, depth: int) -> None:
        self.check(node.left, depth)
        for comparator in node.comparators:
            self.check(comparator, depth)

    def visit_IfExp(self, node: ast.IfExp, depth: int) -> None:
        self.check(node.test, depth)
        self.check(node.body, depth)
        self.check(node.orelse, depth)

    def _display(self, elts: list[ast.expr], depth: int) -> None:
        if len(elts) > MAX_DISPLAY_ITEMS:
            raise self.fail(f"literal has more than {MAX_DISPLAY_ITEMS} items")
        for elt in elts:
            self.check(elt, depth)

    def visit_Tuple(self, node: ast.Tuple, depth: int) -> None:
        self._display(node.elts, depth)

    def visit_List(self, node: ast.List, depth: int) -> None:
        self._display(node.elts, depth)

    def visit_Set(self, node: ast.Set, depth: int) -> None:
        self._display(node.elts, depth)

    def visit_Dict(self, node: ast.Dict, depth: int) -> None:
        if any(key is None for key in node.keys):
            raise self.fail("** unpacking is not allowed")
        self._display([k for k in node.keys if k is not None] + node.values, depth)

    def visit_Call(self, node: ast.Call, depth: int) -> None:
        if node.keywords:
            raise self.fail("keyword arguments are not allowed")
        func = node.func
        if isinstance(func, ast.Name):
            if func.id not in HELPERS:
                raise self.fail(f"calling {func.id}() is not allowed; allowed calls: {', '.join(sorted(HELPERS))}")
            if func.id == "isinstance" and len(node.args) != 2:
                raise self.fail("isinstance() takes an object and a type (or a tuple of types)")
        elif isinstance(func, ast.Attribute):
            if func.attr not in METHODS:
                raise self.fail(
                    f"calling .{func.attr}() is not allowed; allowed methods of built-in types: "
                    f"{', '.join(sorted(METHODS))}"
                )
            if func.attr == "get" and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    self.secret(first.value, ast.unparse(node))
            self.check(func.value, depth)
        else:
            raise self.fail("only named helpers and methods of built-in types may be called")
        if len(node.args) > 8:
            raise self.fail("too many arguments")
        for arg in node.args:
            self.check(arg, depth)


def check_expression(
    source: object,
    what: str = "expression",
    rules: RedactionRules | None = None,
    reveal: tuple[str, ...] = (),
) -> CheckedExpression:
    """Parse and check one expression; raise ExpressionError with a one-line reason."""
    if not isinstance(source, str):
        raise ExpressionError(f"{what} must be a string (got {type(source).__name__})")
    text = source.strip()
    if not text:
        raise ExpressionError(f"{what} is empty")
    if len(text) > EXPRESSION_MAX_SOURCE:
        raise ExpressionError(f"{what} is longer than {EXPRESSION_MAX_SOURCE} characters")
    if "\x00" in text:
        raise ExpressionError(f"{what} contains a NUL character")
    try:
        tree = parse_expression(text)
    except SyntaxError as exc:
        detail = exc.msg or "invalid syntax"
        raise ExpressionError(f"{what} {text!r}: not a Python expression ({detail})") from None
    except (ValueError, MemoryError, RecursionError) as exc:
        raise ExpressionError(f"{what} {text!r}: cannot be parsed ({exc})") from None
    checker = _Checker(text, what, rules or RedactionRules(), reveal)
    checker.check(tree.body, 0)
    return CheckedExpression(source=text, body=tree.body, nodes=checker.nodes)


def parse_template(
    template: object,
    what: str = "template",
    rules: RedactionRules | None = None,
    reveal: tuple[str, ...] = (),
) -> tuple[TemplatePart, ...]:
    """Split a log template into literal text and ``{expression}`` / ``{expression:spec}`` fields.

    ``{{`` and ``}}`` are literal braces. Conversions (``!r``) are refused: they would call __repr__.
    """
    if not isinstance(template, str):
        raise ExpressionError(f"{what} must be a string (got {type(template).__name__})")
    if len(template) > MAX_TEMPLATE_CHARS:
        raise ExpressionError(f"{what} is longer than {MAX_TEMPLATE_CHARS} characters")
    parts: list[TemplatePart] = []
    literal: list[str] = []
    i = 0
    n = len(template)
    fields = 0
    while i < n:
        ch = template[i]
        if ch == "}":
            if i + 1 < n and template[i + 1] == "}":
                literal.append("}")
                i += 2
                continue
            raise ExpressionError(f"{what} {template!r}: single '}}' at position {i}; write '}}}}' for a brace")
        if ch != "{":
            literal.append(ch)
            i += 1
            continue
        if i + 1 < n and template[i + 1] == "{":
            literal.append("{")
            i += 2
            continue
        end, colon = _field_end(template, i + 1, what)
        body = template[i + 1 : colon if colon is not None else end]
        spec = template[colon + 1 : end] if colon is not None else ""
        if "!" in spec or (body.rstrip().endswith(("!r", "!s", "!a"))):
            raise ExpressionError(f"{what} {template!r}: conversions such as !r are not allowed")
        if not _FORMAT_SPEC.fullmatch(spec):
            raise ExpressionError(f"{what} {template!r}: format spec {spec!r} is not a standard format spec")
        fields += 1
        if fields > MAX_TEMPLATE_FIELDS:
            raise ExpressionError(f"{what} has more than {MAX_TEMPLATE_FIELDS} fields")
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(TemplateField(check_expression(body, f"{what} field", rules, reveal), spec))
        i = end + 1
    if literal:
        parts.append("".join(literal))
    if fields == 0 and not parts:
        raise ExpressionError(f"{what} is empty")
    return tuple(parts)


def _field_end(template: str, start: int, what: str) -> tuple[int, int | None]:
    """Index of the '}' closing a field opened before `start`, and of its top-level ':' if any."""
    depth = 0
    quote: str | None = None
    colon: int | None = None
    i = start
    while i < len(template):
        ch = template[i]
        if quote is not None:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "}":
            if depth == 0:
                return i, colon
            depth -= 1
        elif ch == ":" and depth == 0 and colon is None:
            colon = i
        i += 1
    raise ExpressionError(f"{what} {template!r}: field opened at position {start - 1} is never closed")
