"""The agent: a guest inside the application's process.

It owns the probes, the instrumentation backend and one thread of its own. Application threads only
ever run a probe hit (keyhole.agent.probes) and a non-blocking queue put; everything else (finding
code, installing, encoding, writing, budgets, expiry) happens on the agent's thread.

Use::

    from keyhole.agent import Agent

    agent = Agent(sink="events.jsonl")          # or a callable taking an event dict
    agent.start()
    agent.add_probe({"id": "p1", "kind": "snapshot", "file": "shop/orders.py", "line": 42}).wait(5)
    ...
    agent.remove_probe("p1")
    agent.stop()
"""

from __future__ import annotations

import atexit
import os
import platform
import queue
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from keyhole.agent.core import fork
from keyhole.agent.core.cpu_budget import CpuBudget
from keyhole.agent.core.probe_table import ProbeTable
from keyhole.agent.core.shipping import finish_event
from keyhole.agent.core.sinks import CallbackSink, Sink, check_sink, make_sink
from keyhole.agent.core.states import REMOVED
from keyhole.agent.core.worker import Schedule, run_worker, ship
from keyhole.agent.errors import AgentStateError
from keyhole.agent.instrumentation import import_watch
from keyhole.agent.instrumentation.backend import BackendUnavailable
from keyhole.agent.instrumentation.backend_choice import make_backend
from keyhole.agent.probes.agent_thread import AgentThread
from keyhole.agent.probes.base import Probe
from keyhole.agent.probes.kinds import make_probe
from keyhole.agent.probes.metric import MetricProbe
from keyhole.agent.probes.rate_limit import RateLimiter
from keyhole.agent.reading.stacks import task_stacks, thread_stacks
from keyhole.protocol import events as ev
from keyhole.protocol.errors import SpecError
from keyhole.protocol.expression import check_expression, parse_template
from keyhole.protocol.limits import (
    CPU_BUDGET_FRACTION,
    DEFAULT_CAPTURE,
    METRIC_REPORT_SECONDS,
    PROCESS_CAPTURES_PER_SECOND,
    CaptureLimits,
)
from keyhole.protocol.probe_spec import ProbeSpec
from keyhole.protocol.redaction import DEFAULT_RULES, RedactionRules
from keyhole.version import __version__

MAX_QUEUE = 10_000

_active: Agent | None = None
_active_lock = threading.Lock()


class ProbeHandle:
    """Returned by add_probe: the probe's id and a way to wait until it is set (or failed)."""

    def __init__(self, agent: Agent, probe_id: str) -> None:
        self.agent = agent
        self.id = probe_id

    def wait(self, timeout: float = 5.0) -> str:
        """Block until the probe is installed, pending, failed or disabled; return that state."""
        return self.agent.wait_settled(self.id, timeout)

    @property
    def state(self) -> str:
        return self.agent.probe_state(self.id)

    def __repr__(self) -> str:
        return f"<ProbeHandle {self.id} {self.state}>"


class Agent:
    """keyhole's agent for this process. At most one runs at a time."""

    def __init__(
        self,
        sink: Sink | Callable[[dict[str, Any]], object] | str | os.PathLike[str],
        *,
        rules: RedactionRules | None = None,
        limits: CaptureLimits | None = None,
        metric_interval: float = METRIC_REPORT_SECONDS,
        service: str | None = None,
        cpu_budget: float = CPU_BUDGET_FRACTION,
    ) -> None:
        self.rules = rules or DEFAULT_RULES
        self.limits = limits or DEFAULT_CAPTURE
        self.capture_limiter = RateLimiter(PROCESS_CAPTURES_PER_SECOND)
        self.metric_interval = metric_interval
        self.service = service
        self.pid = os.getpid()
        self.dropped = 0
        # Seconds a hit costs before any probe code runs (the callback and dispatch); measured at start.
        self.hit_overhead = 0.0
        check_sink(sink)
        self._sink_target = sink
        self.sink: Sink = CallbackSink(lambda event: None)  # the real one is opened by start()
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.table = ProbeTable(make_backend(), self.report)
        self._budget = CpuBudget(cpu_budget)
        self._state = "new"
        self._worker: threading.Thread | None = None
        self._torn_down = False
        self._paused = False  # the thread stopped for fork() and has not been started again
        self.schedule = Schedule.starting(metric_interval)

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Agent:
        """Start the agent's thread and instrumentation. Raises AgentError with the reason if it cannot."""
        global _active
        with _active_lock:
            if self._state != "new":
                raise AgentStateError("this agent was already started; create a new Agent")
            if _active is not None:
                raise AgentStateError("a keyhole agent is already running in this process; stop it first")
            self.sink = make_sink(self._sink_target)
            try:
                self.table.backend.start()
            except BaseException:
                self.sink.close()  # nothing may stay open when the agent cannot start
                raise
            _active = self
            self._state = "running"
            # The import hook stays in place until stop(), inert while nothing waits: adding and
            # removing finders while another thread walks sys.meta_path could make it skip one.
            import_watch.install(self.table.watcher)
        self._start_worker()
        self.report(
            None,
            ev.AGENT,
            event="started",
            backend=self.table.backend.name,
            python=platform.python_version(),
            keyhole=__version__,
            service=self.service,
        )
        atexit.register(self._at_exit)
        return self

    def _start_worker(self) -> None:
        self._worker = threading.Thread(target=run_worker, args=(self,), name="keyhole-agent", daemon=True)
        self._worker.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Remove every probe, flush events, stop the thread, close the sink. Safe to call twice."""
        global _active
        with _active_lock:
            if self._state != "running":
                return
            self._state = "stopping"
        atexit.unregister(self._at_exit)
        worker = self._worker
        if worker is not None and worker.is_alive() and threading.current_thread() is not worker:
            self.queue.put(("stop",))
            worker.join(timeout)
        if worker is None or worker.is_alive() or threading.current_thread() is worker:
            # The thread is gone or stuck: take everything out from here so no probe outlives stop().
            self.teardown()
        with _active_lock:
            self._state = "stopped"
            if _active is self:
                _active = None

    def _at_exit(self) -> None:
        try:
            self.stop()
        except Exception:
            pass

    @property
    def running(self) -> bool:
        return self._state == "running"

    def teardown(self) -> None:
        """Remove every probe, report what is left to report, flush and close. Runs once, on the
        agent's thread (or on the caller's when that thread cannot)."""
        with self.table.lock:
            if self._torn_down:
                return
            self._torn_down = True
            for report in self.metric_reports(final=True):
                self.emit(report)
            self.table.take_out_all()
            self.report(None, ev.AGENT, event="stopped", dropped=self.dropped or None)
        events: list[dict[str, Any]] = []
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if type(item) is dict:
                events.append(item)
        ship(self, events)
        try:
            self.sink.close()
        finally:
            AgentThread.ident = -1

    # --- probes ----------------------------------------------------------------------------------
    def add_probe(self, spec: ProbeSpec | Mapping[str, Any], *, now: bool = False) -> ProbeHandle:
        """Validate a probe and have the agent's thread install it. Raises SpecError for a bad spec.

        With now=True the calling thread resolves it at once (keyhole run does this at start-up, so
        the program cannot import a module before its probes are waiting for it).
        """
        if not isinstance(spec, ProbeSpec):
            spec = ProbeSpec.from_dict(spec, self.rules)
        if sys.gettrace() is not None:  # per thread: only the caller's can be read
            self.table.tracer_seen = True
        if self._state != "running":
            raise AgentStateError("the agent is not running; call start() first")
        if self._paused:
            self._revive()
        checked = spec
        self.table.add(checked.id, lambda: make_probe(checked, self))
        if now:
            self.table.install(spec.id)
        else:
            self.queue.put(("install", spec.id))
        return ProbeHandle(self, spec.id)

    def remove_probe(self, probe_id: str) -> bool:
        """Remove a probe everywhere; False if there is no such probe."""
        if self._paused:
            self._revive()
        if not self.table.stop(probe_id):
            return False
        self.queue.put(("remove", probe_id))
        return True

    def probe_state(self, probe_id: str) -> str:
        return self.table.state(probe_id)

    def wait_settled(self, probe_id: str, timeout: float) -> str:
        return self.table.wait_settled(probe_id, timeout)

    def probes(self) -> list[dict[str, Any]]:
        """Every probe's spec, state and counters."""
        return self.table.describe()

    def probe(self, probe_id: str) -> Probe | None:
        return self.table.probe(probe_id)

    def stacks(self) -> dict[str, Any]:
        """Every thread's stack and every asyncio task's await chain, now (a finished event)."""
        event = self._status(None, ev.STACKS, threads=thread_stacks(AgentThread.ident), tasks=task_stacks())
        return finish_event(event, self.pid, ())

    def set_redaction(self, rules: RedactionRules) -> None:
        """Change redaction rules without a restart; a probe whose expression now reads a secret is disabled."""
        self.rules = rules
        for entry in self.table.entries():
            entry.probe.set_rules(rules)
            try:
                _recheck(entry.probe.spec, rules)
            except SpecError as exc:
                entry.probe.disable(f"redaction rules changed: {exc}")

    def watch_main(self, path: str) -> None:
        """Probes in the main script: catch its module code as it starts (Python 3.12+)."""
        self.table.watch_main(path)

    # --- the Runtime interface the probes use ---------------------------------------------------
    def emit(self, event: dict[str, Any]) -> None:
        if self._paused:
            self._revive()
        q = self.queue
        if q.qsize() >= MAX_QUEUE:
            self.dropped += 1
            return
        q.put(event)

    def report(self, probe_id: str | None, kind: str, **fields: Any) -> None:
        """Send a status event: the probe table's, and from outside the probes (the gateway link: a
        refused command, probes dropped by the dead-man switch)."""
        self.emit(self._status(probe_id, kind, **fields))

    def probe_disabled(self, probe: Probe, reason: str) -> None:
        if self._paused:
            self._revive()
        probe.enabled = False
        self.report(probe.id, ev.DISABLED, reason=reason, **probe.stats())
        self.queue.put(("uninstall", probe.id))

    def _status(self, probe_id: str | None, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"probe": probe_id, "kind": kind, "ts": time.perf_counter(), "thread": threading.get_ident()}
        event.update({k: v for k, v in fields.items() if v is not None})
        return event

    # --- periodic work (agent thread) --------------------------------------------------------------
    def metric_reports(self, final: bool) -> list[dict[str, Any]]:
        out = []
        for entry in self.table.entries():
            probe = entry.probe
            if isinstance(probe, MetricProbe) and (probe.installed or final) and entry.state != REMOVED:
                report = probe.report(final and probe.installed)
                if report is not None:
                    out.append(report)
        return out

    def check_budget(self, now: float, used: dict[str, float]) -> None:
        self._budget.record(now, used)
        over = self._budget.over_budget()
        if over is None:
            return
        probe_id, mine, everyone = over
        probe = self.table.probe(probe_id)
        self._budget.forget(probe_id)
        if probe is not None:
            probe.disable(
                f"process CPU budget exceeded: keyhole used {everyone * 1000:.0f} ms in "
                f"{self._budget.window:.0f} s (the limit is {self._budget.allowance * 1000:.0f} ms); "
                f"this probe used {mine * 1000:.0f} ms"
            )

    # --- fork -------------------------------------------------------------------------------------
    def pause_worker(self, timeout: float = 1.0) -> None:
        """Before fork(): stop the agent's thread, so it holds no lock the child would inherit taken,
        and so CPython does not warn that the process forks while multi-threaded."""
        worker = self._worker
        if worker is None:
            return
        if self._state == "running" and worker.is_alive() and threading.current_thread() is not worker:
            self.queue.put(("pause",))
            worker.join(timeout)
            fork.wait_for_os_thread_exit()

    def resume_worker(self) -> None:
        """After fork(), in the parent. From 3.13 CPython counts threads for its fork warning after
        these hooks run, so there a new thread starts with the agent's next piece of work (an event,
        a command) instead of here."""
        self._paused = True
        if sys.version_info < (3, 13):
            self._revive()

    def _revive(self) -> None:
        with _active_lock:
            worker = self._worker
            if self._paused and self._state == "running" and (worker is None or not worker.is_alive()):
                self._start_worker()
            self._paused = False

    def after_fork_in_child(self) -> None:
        parent = self.pid
        self.pid = os.getpid()
        self.queue = queue.SimpleQueue()
        self.table.reset_after_fork()
        self._budget = CpuBudget(self._budget.allowance / self._budget.window)
        self.schedule = Schedule.starting(self.metric_interval)
        self.dropped = 0
        for entry in self.table.entries():
            entry.probe.reset_after_fork()
        self._paused = False
        if self._state == "running":
            self._start_worker()
            self.report(None, ev.AGENT, event="started", forked_from=parent, backend=self.table.backend.name)


def _recheck(spec: ProbeSpec, rules: RedactionRules) -> None:
    for source in (spec.condition, spec.value, *spec.watch):
        if source is not None:
            check_expression(source, "expression", rules, spec.reveal)
    if spec.template is not None:
        parse_template(spec.template, "template", rules, spec.reveal)


def active_agent() -> Agent | None:
    return _active


def _new_active_lock() -> None:
    global _active_lock
    _active_lock = threading.Lock()


fork.install_hooks(active_agent, _new_active_lock)

__all__ = ["Agent", "BackendUnavailable", "ProbeHandle", "active_agent"]
