"""The agent: a guest inside the application's process.

It owns the probes, the instrumentation backend and one thread of its own. Application threads only
ever run a probe hit (keyhole.agent.probes.kinds) and a non-blocking queue put; everything else (finding
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
from dataclasses import dataclass, field
from types import CodeType
from typing import Any

from keyhole.agent.core.cpu_budget import CpuBudget
from keyhole.agent.core.shipping import finish_event
from keyhole.agent.core.sinks import CallbackSink, Sink, check_sink, make_sink
from keyhole.agent.core.states import FAILED, INSTALLED, INSTALLING, PENDING, REMOVED, SETTLED
from keyhole.agent.core.worker import Schedule, run_worker, teardown
from keyhole.agent.errors import AgentStateError, ProbeIdTaken
from keyhole.agent.instrumentation import import_watch, locations
from keyhole.agent.instrumentation.backend import Backend, BackendUnavailable
from keyhole.agent.instrumentation.backend_choice import make_backend
from keyhole.agent.instrumentation.code_search import normalize, trace_function_active
from keyhole.agent.instrumentation.sites import CodePlan, LineSite
from keyhole.agent.probes.agent_thread import AgentThread
from keyhole.agent.probes.kinds import (
    ExceptionProbe,
    FunctionProbe,
    LineProbe,
    MetricProbe,
    Probe,
    StacksProbe,
    make_probe,
)
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
from keyhole.protocol.probe_spec import FUNCTION_KINDS, LINE_KINDS, ProbeSpec
from keyhole.protocol.redaction import DEFAULT_RULES, RedactionRules
from keyhole.version import __version__

MAX_QUEUE = 10_000

_active: Agent | None = None
_active_lock = threading.Lock()


@dataclass
class Entry:
    """The agent's bookkeeping for one probe."""

    probe: Probe
    state: str = INSTALLING
    message: str = ""
    locations: list[str] = field(default_factory=list)
    attachments: list[tuple[CodeType, int | None]] = field(default_factory=list)
    paths: set[str] = field(default_factory=set)
    retry_at: float = 0.0
    retry_delay: float = 0.02


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
        self._sink: Sink = CallbackSink(lambda event: None)  # the real one is opened by start()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._entries: dict[str, Entry] = {}
        self._plans: dict[int, CodePlan] = {}
        self._backend: Backend = make_backend()
        self._watcher = import_watch.ImportWatcher(self._wants, self._on_module_code)
        self._wanted_names: frozenset[str] = frozenset()
        self._budget = CpuBudget(cpu_budget)
        self._state = "new"
        self._worker: threading.Thread | None = None
        self._main_watch: str | None = None
        self._tracer_seen = False
        self._torn_down = False
        self._paused = False  # the thread stopped for fork() and has not been started again
        self.schedule = Schedule.starting(metric_interval)
        # Ids of removed probes (their entries are forgotten), so probe_state() can still answer.
        self._removed: dict[str, None] = {}

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Agent:
        """Start the agent's thread and instrumentation. Raises AgentError with the reason if it cannot."""
        global _active
        with _active_lock:
            if self._state != "new":
                raise AgentStateError("this agent was already started; create a new Agent")
            if _active is not None:
                raise AgentStateError("a keyhole agent is already running in this process; stop it first")
            self._sink = make_sink(self._sink_target)
            try:
                self._backend.start()
            except BaseException:
                self._sink.close()  # nothing may stay open when the agent cannot start
                raise
            _active = self
            self._state = "running"
            # The import hook stays in place until stop(), inert while nothing waits: adding and
            # removing finders while another thread walks sys.meta_path could make it skip one.
            import_watch.install(self._watcher)
        self._start_worker()
        self.emit(
            self._status(
                None,
                ev.AGENT,
                event="started",
                backend=self._backend.name,
                python=platform.python_version(),
                keyhole=__version__,
                service=self.service,
            )
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
            self._queue.put(("stop",))
            worker.join(timeout)
        if worker is None or worker.is_alive() or threading.current_thread() is worker:
            # The thread is gone or stuck: take everything out from here so no probe outlives stop().
            self.shutdown_inline()
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

    # --- probes ----------------------------------------------------------------------------------
    def add_probe(self, spec: ProbeSpec | Mapping[str, Any], *, now: bool = False) -> ProbeHandle:
        """Validate a probe and have the agent's thread install it. Raises SpecError for a bad spec.

        With now=True the calling thread resolves it at once (keyhole run does this at start-up, so
        the program cannot import a module before its probes are waiting for it).
        """
        if not isinstance(spec, ProbeSpec):
            spec = ProbeSpec.from_dict(spec, self.rules)
        if sys.gettrace() is not None:  # per thread: only the caller's can be read
            self._tracer_seen = True
        if self._state != "running":
            raise AgentStateError("the agent is not running; call start() first")
        if self._paused:
            self._revive()
        with self._lock:
            existing = self._entries.get(spec.id)
            if existing is not None and existing.state != REMOVED:
                raise ProbeIdTaken(f"a probe with id {spec.id!r} is already set; remove it first or choose another id")
            self._entries[spec.id] = Entry(make_probe(spec, self))
        if now:
            self.install(spec.id)
        else:
            self._queue.put(("install", spec.id))
        return ProbeHandle(self, spec.id)

    def remove_probe(self, probe_id: str) -> bool:
        """Remove a probe everywhere; False if there is no such probe."""
        if self._paused:
            self._revive()
        with self._lock:
            entry = self._entries.get(probe_id)
            if entry is None or entry.state == REMOVED:
                return False
            entry.probe.enabled = False
        self._queue.put(("remove", probe_id))
        return True

    def probe_state(self, probe_id: str) -> str:
        with self._lock:
            entry = self._entries.get(probe_id)
            if entry is None:
                return REMOVED if probe_id in self._removed else "unknown"
            return entry.state

    def forget(self, probe_id: str) -> None:
        """Drop a removed probe's bookkeeping (its events are out)."""
        with self._changed:
            entry = self._entries.get(probe_id)
            if entry is not None and entry.state == REMOVED:
                del self._entries[probe_id]
                self._removed[probe_id] = None
                if len(self._removed) > 1000:
                    del self._removed[next(iter(self._removed))]
            self._changed.notify_all()

    def wait_settled(self, probe_id: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                entry = self._entries.get(probe_id)
                if entry is None:
                    return REMOVED if probe_id in self._removed else "unknown"
                if entry.state in SETTLED:
                    return entry.state
                left = deadline - time.monotonic()
                if left <= 0:
                    return entry.state
                self._changed.wait(left)

    def probes(self) -> list[dict[str, Any]]:
        """Every probe's spec, state and counters."""
        with self._lock:
            return [
                {
                    "id": pid,
                    "kind": e.probe.kind,
                    "state": e.state,
                    "message": e.message,
                    "locations": list(e.locations),
                    "spec": e.probe.spec.to_dict(),
                    **e.probe.stats(),
                }
                for pid, e in self._entries.items()
            ]

    def stacks(self) -> dict[str, Any]:
        """Every thread's stack and every asyncio task's await chain, now (a finished event)."""
        event = self._status(None, ev.STACKS, threads=thread_stacks(AgentThread.ident), tasks=task_stacks())
        return finish_event(event, self.pid, ())

    def set_redaction(self, rules: RedactionRules) -> None:
        """Change redaction rules without a restart; a probe whose expression now reads a secret is disabled."""
        self.rules = rules
        with self._lock:
            entries = list(self._entries.values())
        for entry in entries:
            entry.probe.set_rules(rules)
            try:
                _recheck(entry.probe.spec, rules)
            except SpecError as exc:
                entry.probe.disable(f"redaction rules changed: {exc}")

    def watch_main(self, path: str) -> None:
        """Probes in the main script: catch its module code as it starts (Python 3.12+)."""
        self._main_watch = normalize(path)
        self._backend.watch_main(self._main_watch, self._on_main_code)

    # --- the Runtime interface the probes use ---------------------------------------------------
    def emit(self, event: dict[str, Any]) -> None:
        if self._paused:
            self._revive()
        q = self._queue
        if q.qsize() >= MAX_QUEUE:
            self.dropped += 1
            return
        q.put(event)

    def report(self, probe_id: str | None, kind: str, **fields: Any) -> None:
        """Send a status event from outside the probes (the gateway link: a refused command, probes
        dropped by the dead-man switch)."""
        self.emit(self._status(probe_id, kind, **fields))

    def probe_disabled(self, probe: Probe, reason: str) -> None:
        if self._paused:
            self._revive()
        probe.enabled = False
        self.emit(self._status(probe.id, ev.DISABLED, reason=reason, **probe.stats()))
        self._queue.put(("uninstall", probe.id))

    def _status(self, probe_id: str | None, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"probe": probe_id, "kind": kind, "ts": time.perf_counter(), "thread": threading.get_ident()}
        event.update({k: v for k, v in fields.items() if v is not None})
        return event

    # --- installing (agent thread, or an importing thread) ----------------------------------------
    def _set_state(self, entry: Entry, state: str, message: str = "") -> None:
        with self._changed:
            entry.state = state
            entry.message = message
            self._changed.notify_all()

    def install(self, probe_id: str) -> None:
        with self._lock:
            entry = self._entries.get(probe_id)
            if entry is None or entry.state not in (INSTALLING, PENDING):
                return
            probe = entry.probe
            if isinstance(probe, StacksProbe):
                self._set_state(entry, INSTALLED)
                self.emit(self._status(probe.id, ev.INSTALLED, locations=["process"]))
                return
        # Finding the code (a garbage collector scan, reading the source) happens outside the lock,
        # so an import on an application thread does not wait for it.
        resolution = self._resolve(probe.spec, None)
        with self._lock:
            if entry.state in (INSTALLING, PENDING):
                self._apply_resolution(entry, resolution, None)
                self._refresh_watcher()

    def _resolve(self, spec: ProbeSpec, module: locations.ModuleBeingImported | None) -> locations.Resolution:
        if spec.kind in LINE_KINDS:
            assert spec.file is not None and spec.line is not None
            return locations.resolve_line(
                spec.file, spec.line, self._backend.original, self._backend.live_frames, module
            )
        assert spec.module is not None and spec.qualname is not None
        return locations.resolve_function(spec.module, spec.qualname, self._backend.original, module)

    def _apply_resolution(
        self, entry: Entry, res: locations.Resolution, module: locations.ModuleBeingImported | None
    ) -> bool:
        probe = entry.probe
        if res.status == locations.PENDING:
            first = entry.state != PENDING or entry.message != res.message
            self._set_state(entry, PENDING, res.message)
            entry.retry_at = time.monotonic() + entry.retry_delay
            # Soon at first (the main script's functions appear a moment after it starts), then rarely:
            # each retry may scan the garbage collector.
            entry.retry_delay = min(entry.retry_delay * 2, 30.0)
            if first:
                self.emit(self._status(probe.id, ev.PENDING, reason=res.message))
            return False
        if res.status == locations.ERROR:
            probe.enabled = False
            self._set_state(entry, FAILED, res.message)
            self.emit(self._status(probe.id, ev.ERROR, error=res.message))
            return False
        changed = self._attach(entry, res.targets)
        notes: list[str] = []
        if module is None:
            try:
                notes = self._backend.apply(self._plans, changed, entry.paths)
            except Exception as exc:
                self._fail_install(entry, exc)
                return False
        if self._tracer_seen or trace_function_active():
            self._tracer_seen = True
            notes.append(
                "a trace function (a debugger or coverage tool) is active in this process; keyhole leaves it in "
                "place" + ("" if self._backend.live_frames else ", and it will see keyhole's injected calls")
            )
        probe.installed = True
        self._set_state(entry, INSTALLED)
        self.emit(
            self._status(
                probe.id, ev.INSTALLED, locations=entry.locations, backend=self._backend.name, notes=notes or None
            )
        )
        return True

    def _fail_install(self, entry: Entry, exc: Exception) -> None:
        """Instrumenting failed part way: take out whatever was put in, and say why."""
        changed = self._detach(entry)
        try:
            if changed:
                self._backend.apply(self._plans, changed, entry.paths)
        except Exception:
            pass  # the original error is the one to report
        entry.probe.enabled = False
        self._set_state(entry, FAILED, f"could not instrument: {type(exc).__name__}: {exc}")
        self.emit(self._status(entry.probe.id, ev.ERROR, error=entry.message))

    def _attach(self, entry: Entry, targets: list[CodeType]) -> list[CodeType]:
        probe = entry.probe
        spec = probe.spec
        for code in targets:
            plan = self._plans.get(id(code))
            if plan is None:
                plan = self._plans[id(code)] = CodePlan(code)
            if isinstance(probe, LineProbe):
                assert spec.line is not None
                site = plan.lines.get(spec.line)
                if site is None:
                    site = plan.lines[spec.line] = LineSite(spec.line)
                site.set_probes((*site.probes, probe))
                entry.attachments.append((code, spec.line))
                entry.locations.append(locations.describe(code, spec.line))
            else:
                function = plan.function
                if isinstance(probe, FunctionProbe):
                    function.entry = (*function.entry, probe)
                    function.exit = (*function.exit, probe)
                    function.unwind = (*function.unwind, probe)
                elif isinstance(probe, ExceptionProbe):
                    function.unwind = (*function.unwind, probe)
                entry.attachments.append((code, None))
                entry.locations.append(locations.describe(code, None))
            entry.paths.add(normalize(code.co_filename))
        return list(targets)

    def _detach(self, entry: Entry) -> list[CodeType]:
        probe: object = entry.probe  # compared by identity with what the sites hold
        changed: list[CodeType] = []
        for code, line in entry.attachments:
            plan = self._plans.get(id(code))
            if plan is None:
                continue
            if line is not None:
                site = plan.lines.get(line)
                if site is not None:
                    site.set_probes(tuple(p for p in site.probes if p is not probe))
                    if not site.probes:
                        del plan.lines[line]
            else:
                function = plan.function
                function.entry = tuple(p for p in function.entry if p is not probe)
                function.exit = tuple(p for p in function.exit if p is not probe)
                function.unwind = tuple(p for p in function.unwind if p is not probe)
            if not plan:
                del self._plans[id(code)]
            changed.append(code)
        entry.attachments = []
        return changed

    def uninstall(self, probe_id: str, final_state: str, message: str = "") -> None:
        with self._lock:
            entry = self._entries.get(probe_id)
            if entry is None:
                return
            entry.probe.enabled = False
            changed = self._detach(entry)
            if changed:
                self._backend.apply(self._plans, changed, entry.paths)
            if final_state == REMOVED or entry.state in (INSTALLED, PENDING, INSTALLING):
                self._set_state(entry, final_state, message)
            self._refresh_watcher()

    def next_retry(self) -> float | None:
        """When the earliest pending probe should be resolved again (monotonic clock), if any."""
        with self._lock:
            times = [e.retry_at for e in self._entries.values() if e.state == PENDING]
        return min(times) if times else None

    def retry_pending(self, now: float) -> None:
        with self._lock:
            due = [e for e in self._entries.values() if e.state == PENDING and e.retry_at <= now]
        for entry in due:
            resolution = self._resolve(entry.probe.spec, None)
            with self._lock:
                if entry.state == PENDING:
                    self._apply_resolution(entry, resolution, None)
        if due:
            with self._lock:
                self._refresh_watcher()

    # --- modules imported later ------------------------------------------------------------------
    def _refresh_watcher(self) -> None:
        names: set[str] = set()
        for entry in self._entries.values():
            if entry.state != PENDING:
                continue
            spec = entry.probe.spec
            if spec.kind in FUNCTION_KINDS and spec.module:
                names.add(spec.module)
            elif spec.file:
                stem = spec.file.rsplit("/", 1)[-1][:-3]
                if stem == "__init__":
                    parts = spec.file.rsplit("/", 2)
                    stem = parts[-2] if len(parts) >= 2 else stem
                names.add("." + stem)
        self._wanted_names = frozenset(names)

    def _wants(self, fullname: str) -> bool:
        wanted = self._wanted_names
        return fullname in wanted or ("." + fullname.rsplit(".", 1)[-1]) in wanted

    def _on_module_code(self, fullname: str, path: str, code: CodeType) -> CodeType:
        """Called by the import hook between compiling a module and running it."""
        with self._lock:
            module = locations.ModuleBeingImported(fullname, normalize(path), code)
            attached: list[Entry] = []
            for entry in [e for e in self._entries.values() if e.state == PENDING]:
                res = self._resolve(entry.probe.spec, module)
                if res.status == locations.PENDING:
                    continue
                if self._apply_resolution(entry, res, module):
                    attached.append(entry)
            if attached:
                try:
                    code = self._backend.instrument_module(code, self._plans)
                except Exception as exc:
                    for entry in attached:
                        self._fail_install(entry, exc)
            self._refresh_watcher()
        return code

    def _on_main_code(self, code: CodeType) -> None:
        if self._main_watch is not None:
            self._on_module_code("__main__", self._main_watch, code)

    # --- periodic work (agent thread) --------------------------------------------------------------
    def probe(self, probe_id: str) -> Probe | None:
        with self._lock:
            entry = self._entries.get(probe_id)
            return entry.probe if entry is not None else None

    def entries(self) -> list[Entry]:
        with self._lock:
            return list(self._entries.values())

    def metric_reports(self, final: bool) -> list[dict[str, Any]]:
        out = []
        for entry in self.entries():
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
        with self._lock:
            entry = self._entries.get(probe_id)
        self._budget.forget(probe_id)
        if entry is not None:
            entry.probe.disable(
                f"process CPU budget exceeded: keyhole used {everyone * 1000:.0f} ms in "
                f"{self._budget.window:.0f} s (the limit is {self._budget.allowance * 1000:.0f} ms); "
                f"this probe used {mine * 1000:.0f} ms"
            )

    def shutdown_inline(self) -> None:
        """Undo everything from the calling thread (used when the agent's thread cannot)."""
        teardown(self)

    # --- fork -------------------------------------------------------------------------------------
    def pause_worker(self, timeout: float = 1.0) -> None:
        """Before fork(): stop the agent's thread, so it holds no lock the child would inherit taken,
        and so CPython does not warn that the process forks while multi-threaded."""
        worker = self._worker
        if worker is None:
            return
        if self._state == "running" and worker.is_alive() and threading.current_thread() is not worker:
            self._queue.put(("pause",))
            worker.join(timeout)
            _wait_for_os_thread_exit()

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
        self._queue = queue.SimpleQueue()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._budget = CpuBudget(self._budget.allowance / self._budget.window)
        self.schedule = Schedule.starting(self.metric_interval)
        self.dropped = 0
        for entry in self._entries.values():
            entry.probe.reset_after_fork()
        self._paused = False
        if self._state == "running":
            self._start_worker()
            self.emit(self._status(None, ev.AGENT, event="started", forked_from=parent, backend=self._backend.name))


def _recheck(spec: ProbeSpec, rules: RedactionRules) -> None:
    for source in (spec.condition, spec.value, *spec.watch):
        if source is not None:
            check_expression(source, "expression", rules, spec.reveal)
    if spec.template is not None:
        parse_template(spec.template, "template", rules, spec.reveal)


def active_agent() -> Agent | None:
    return _active


def _wait_for_os_thread_exit(limit: float = 0.05) -> None:
    """join() returns a moment before the operating system thread is gone, and fork() counts those."""
    tasks = "/proc/self/task"
    if not os.path.isdir(tasks):
        return
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if len(os.listdir(tasks)) <= threading.active_count():
                return
        except OSError:
            return
        time.sleep(0.0005)


def _before_fork() -> None:
    agent = _active
    if agent is not None:
        agent.pause_worker()


def _after_fork_in_parent() -> None:
    agent = _active
    if agent is not None:
        agent.resume_worker()


def _after_fork_in_child() -> None:
    global _active_lock
    _active_lock = threading.Lock()
    AgentThread.ident = -1
    AgentThread.busy = False
    agent = _active
    if agent is not None:
        agent.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)

__all__ = ["Agent", "BackendUnavailable", "ProbeHandle", "active_agent"]
