"""What an expression sees at a probe hit: the frame's locals (only CPython's own), then its globals,
and the step budget it is charged against."""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

from keyhole.agent.errors import EvalError, StepBudgetExceeded
from keyhole.agent.reading import safe_types
from keyhole.protocol.limits import EXPRESSION_STEP_BUDGET

_MISSING = safe_types.MISSING


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
