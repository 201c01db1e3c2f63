"""The agent's exceptions. None of them ever reaches application code: the agent catches them on
its own boundary and turns them into events; their messages are what the user reads."""


class AgentError(Exception):
    """Base of every error the agent raises."""


class AgentStateError(AgentError):
    """The agent was used out of order (started twice, used after stop)."""


class ProbeIdTaken(AgentError):
    """A probe with this id is still set (or still being removed)."""


class EvalError(AgentError):
    """An expression failed at run time (missing name, bad key, an operation keyhole will not do)."""


class StepBudgetExceeded(EvalError):
    """An expression used more evaluator steps than its budget; the probe is disabled."""


class RedactedRead(EvalError):
    """An expression tried to read a value that keyhole redacts."""


class UnsafeOperation(EvalError):
    """An operation would run application code, or is not defined for the object: the reason is for the user."""


class KeyMissing(UnsafeOperation):
    """A dict has no such key."""
