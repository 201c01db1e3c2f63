"""The keyhole agent: runs inside an application process and observes it without changing it.

Only the standard library, keyhole.protocol and (on Python 3.11) the bytecode package are imported.
"""

from keyhole.agent.core.agent import Agent, ProbeHandle, active_agent
from keyhole.agent.core.sinks import CallbackSink, JsonlFileSink, Sink
from keyhole.agent.errors import AgentError, AgentStateError, EvalError
from keyhole.agent.instrumentation.backend import BackendUnavailable

__all__ = [
    "Agent",
    "AgentError",
    "AgentStateError",
    "BackendUnavailable",
    "CallbackSink",
    "EvalError",
    "JsonlFileSink",
    "ProbeHandle",
    "Sink",
    "active_agent",
]
