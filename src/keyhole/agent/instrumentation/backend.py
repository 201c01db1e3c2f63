"""The instrumentation backend interface; backend_choice.py picks one by Python version."""

from __future__ import annotations

from types import CodeType

from keyhole.agent.errors import AgentError
from keyhole.agent.instrumentation.sites import CodePlan


class BackendUnavailable(AgentError):
    """Instrumentation cannot start in this process; the message says why and what to do."""


class Backend:
    """Puts the probes of a set of code plans into the running program, and takes them out again."""

    name = ""
    # True when code that is already running sees a probe at once (sys.monitoring); False when only
    # new calls do (code swapping on 3.11).
    live_frames = False

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def original(self, code: CodeType) -> CodeType:
        """The application's own code object for `code` (which may be an instrumented copy)."""
        return code

    def apply(self, plans: dict[int, CodePlan], changed: list[CodeType], paths: set[str]) -> list[str]:
        """Make the instrumentation of `changed` code objects match their plans; return notes for the user."""
        raise NotImplementedError

    def instrument_module(self, code: CodeType, plans: dict[int, CodePlan]) -> CodeType:
        """Instrument a module's code before it first runs (the import hook); return the code to run."""
        raise NotImplementedError

    def watch_main(self, path: str, on_start: object) -> bool:
        """Call on_start(code) when the main script's module code starts; False if not supported."""
        return False
