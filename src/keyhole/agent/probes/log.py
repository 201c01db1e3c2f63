"""Log probes: a line of text from a template, made on the hit and redacted on the agent's thread."""

from __future__ import annotations

import ast
import operator
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, NamedTuple

from keyhole.agent.errors import EvalError, StepBudgetExceeded
from keyhole.agent.probes.base import Runtime
from keyhole.agent.probes.line import LineProbe
from keyhole.agent.probes.rate_limit import ByteBudget
from keyhole.agent.reading import safe_types
from keyhole.agent.reading.capture import TEXT_MARGIN
from keyhole.agent.reading.evaluator import CompiledExpression, compile_expression
from keyhole.agent.reading.foreign_exceptions import from_application
from keyhole.agent.reading.formatting import format_value
from keyhole.agent.reading.scope import Scope, frame_locals_of
from keyhole.protocol import events as ev
from keyhole.protocol.expression import TemplateField
from keyhole.protocol.limits import LOG_BYTES_PER_SECOND, MAX_MESSAGE
from keyhole.protocol.probe_spec import ProbeSpec
from keyhole.protocol.redaction import RedactionRules

_ident = threading.get_ident
_MISSING = safe_types.MISSING
# A log line is cut on the hit with this much to spare; the agent's thread redacts, then cuts to
# MAX_MESSAGE, so a secret that crosses the final cut is still recognised whole.
_MESSAGE_KEEP = MAX_MESSAGE + TEXT_MARGIN


class _FastTemplate(NamedTuple):
    layout: str
    lookup: Callable[[Any], Any]
    single: bool


_FAST_FORMAT_IDS = frozenset(map(id, (str, int, float, bool, type(None))))


class LogProbe(LineProbe):
    kind = ev.LOG

    def __init__(self, spec: ProbeSpec, runtime: Runtime) -> None:
        super().__init__(spec, runtime)
        self.bytes = ByteBudget(LOG_BYTES_PER_SECOND)

    def set_rules(self, rules: RedactionRules) -> None:
        super().set_rules(rules)
        # (literal text before the field, local name for the fast path or None, expression, format spec)
        segments: list[tuple[str, str | None, CompiledExpression, str]] = []
        literal = ""
        for part in self.spec.checked_template:
            if isinstance(part, TemplateField):
                body = part.expression.body
                name = body.id if isinstance(body, ast.Name) and not part.format_spec else None
                segments.append(
                    (literal, name, compile_expression(part.expression, rules, self.spec.reveal), part.format_spec)
                )
                literal = ""
            else:
                literal += part
        self.segments = tuple(segments)
        self.tail = literal
        # Every field a bare local name: one C lookup for all of them, and one %-format when their
        # values are exact built-in scalars (whose __str__ is C). "%.Ns" copies at most N characters
        # of a string, however long it is.
        self.fast: _FastTemplate | None = None
        local_names = [name for _, name, _, _ in segments if name is not None]
        if segments and len(local_names) == len(segments):
            field = f"%.{_MESSAGE_KEEP}s"
            layout = "".join(lit.replace("%", "%%") + field for lit, _, _, _ in segments) + literal.replace("%", "%%")
            self.fast = _FastTemplate(layout, operator.itemgetter(*local_names), len(segments) == 1)

    def emit(self, frame: FrameType, scope: Scope | None, now: float, admitted: int) -> None:
        fast = self.fast
        if fast is not None:
            try:
                values = fast.lookup(scope.locals if scope is not None else frame_locals_of(frame))
            except Exception as exc:  # not all locals (a global, a missing name, opaque locals): the long way
                if isinstance(exc, RecursionError) or from_application(exc):
                    raise
                values = _MISSING
            if values is not _MISSING:
                if fast.single:
                    values = (values,)
                if set(map(id, map(type, values))) <= _FAST_FORMAT_IDS:  # by id: hashing a type runs its metaclass
                    try:
                        text = fast.layout % values
                    except ValueError:  # an int too long to print: the long way says so
                        text = None
                    if text is not None:
                        self._ship(text, now, admitted, None)
                        return
        self._slow_emit(frame, scope, now, admitted)

    def _slow_emit(self, frame: FrameType, scope: Scope | None, now: float, admitted: int) -> None:
        out: list[str] = []
        error: EvalError | None = None
        names = self.names
        # Bare local names need only the locals; a Scope is made for the first other expression.
        local_get = (scope.locals if scope is not None else frame_locals_of(frame)).get
        for literal, name, expression, spec in self.segments:
            if literal:
                out.append(literal)
            if name is not None:
                # A bare local name: read it here; anything else goes through the evaluator.
                value = local_get(name, _MISSING)
                if value is not _MISSING:
                    cls = type(value)
                    if cls is str:
                        out.append(value if len(value) <= _MESSAGE_KEEP else value[:_MESSAGE_KEEP])
                    else:
                        try:
                            out.append(format_value(value, "", names))
                        except EvalError as exc:
                            error = exc
                            out.append(f"<error: {exc}>")
                    continue
            try:
                if scope is None:
                    scope = Scope(frame)
                text = format_value(expression.evaluate(scope), spec, names)
                out.append(text if len(text) <= _MESSAGE_KEEP else text[:_MESSAGE_KEEP])
            except StepBudgetExceeded:
                raise
            except EvalError as exc:
                error = exc
                out.append(f"<error: {exc}>")
        if self.tail:
            out.append(self.tail)
        self._ship("".join(out), now, admitted, error)

    def _ship(self, message: str, now: float, admitted: int, error: EvalError | None) -> None:
        if len(message) > _MESSAGE_KEEP:
            message = message[:_MESSAGE_KEEP]
        if self.bytes.take(now, min(len(message), MAX_MESSAGE)):
            self.runtime.emit({"probe": self.id, "kind": "log", "ts": now, "thread": _ident(), "message": message})
        else:
            self.limited += 1
        self._after_emit(admitted)
        if error is not None:
            self._failed(error, now)
        elif self.consecutive_errors:
            self.consecutive_errors = 0
