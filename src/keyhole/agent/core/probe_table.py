"""The agent's probes and where they are attached: installing them, retrying those whose code is not
loaded yet, catching modules as they are imported, and taking probes out again.

Installing runs on the agent's thread, or on an application thread that is importing a module the
probe waits for (under the table's lock, between compiling the module and running it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import CodeType
from typing import Any, Protocol

from keyhole.agent.core.states import FAILED, INSTALLED, INSTALLING, PENDING, REMOVED, SETTLED, STOPPED
from keyhole.agent.errors import ProbeIdTaken
from keyhole.agent.instrumentation import import_watch, locations
from keyhole.agent.instrumentation.backend import Backend
from keyhole.agent.instrumentation.code_search import normalize, trace_function_active
from keyhole.agent.instrumentation.sites import CodePlan, LineSite
from keyhole.agent.probes.base import Probe
from keyhole.agent.probes.exception import ExceptionProbe
from keyhole.agent.probes.function import FunctionProbe
from keyhole.agent.probes.line import LineProbe
from keyhole.agent.probes.stacks import StacksProbe
from keyhole.protocol import events as ev
from keyhole.protocol.probe_spec import FUNCTION_KINDS, LINE_KINDS, ProbeSpec


class Report(Protocol):
    """Sends a status event for a probe (or for the agent, with None)."""

    def __call__(self, probe_id: str | None, kind: str, **fields: Any) -> None: ...


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


class ProbeTable:
    def __init__(self, backend: Backend, report: Report) -> None:
        self.backend = backend
        self._report = report
        self.lock = threading.RLock()
        self._changed = threading.Condition(self.lock)
        self._entries: dict[str, Entry] = {}
        self._plans: dict[int, CodePlan] = {}
        self.watcher = import_watch.ImportWatcher(self._wants, self._on_module_code)
        self._wanted_names: frozenset[str] = frozenset()
        self._main_watch: str | None = None
        self.tracer_seen = False
        # Ids of removed probes (their entries are forgotten), so state() can still answer.
        self._removed: dict[str, None] = {}

    def reset_after_fork(self) -> None:
        """In a forked child: locks of its own (the parent's may have been held at fork())."""
        self.lock = threading.RLock()
        self._changed = threading.Condition(self.lock)

    # --- the probes ---------------------------------------------------------------------------------
    def add(self, probe_id: str, make: Callable[[], Probe]) -> None:
        with self.lock:
            existing = self._entries.get(probe_id)
            if existing is not None and existing.state != REMOVED:
                raise ProbeIdTaken(f"a probe with id {probe_id!r} is already set; remove it first or choose another id")
            self._entries[probe_id] = Entry(make())

    def stop(self, probe_id: str) -> bool:
        """Stop a probe's hits at once (its removal follows on the agent's thread); False if there is none."""
        with self.lock:
            entry = self._entries.get(probe_id)
            if entry is None or entry.state == REMOVED:
                return False
            entry.probe.enabled = False
            return True

    def state(self, probe_id: str) -> str:
        with self.lock:
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

    def describe(self) -> list[dict[str, Any]]:
        """Every probe's spec, state and counters."""
        with self.lock:
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

    def probe(self, probe_id: str) -> Probe | None:
        with self.lock:
            entry = self._entries.get(probe_id)
            return entry.probe if entry is not None else None

    def entries(self) -> list[Entry]:
        with self.lock:
            return list(self._entries.values())

    def watch_main(self, path: str) -> None:
        """Probes in the main script: catch its module code as it starts (Python 3.12+)."""
        self._main_watch = normalize(path)
        self.backend.watch_main(self._main_watch, self._on_main_code)

    # --- installing (agent thread, or an importing thread) ----------------------------------------
    def _set_state(self, entry: Entry, state: str, message: str = "") -> None:
        with self._changed:
            entry.state = state
            entry.message = message
            self._changed.notify_all()

    def install(self, probe_id: str) -> None:
        with self.lock:
            entry = self._entries.get(probe_id)
            if entry is None or entry.state not in (INSTALLING, PENDING):
                return
            probe = entry.probe
            if isinstance(probe, StacksProbe):
                self._set_state(entry, INSTALLED)
                self._report(probe.id, ev.INSTALLED, locations=["process"])
                return
        # Finding the code (a garbage collector scan, reading the source) happens outside the lock,
        # so an import on an application thread does not wait for it.
        resolution = self._resolve(probe.spec, None)
        with self.lock:
            if entry.state in (INSTALLING, PENDING):
                self._apply_resolution(entry, resolution, None)
                self._refresh_watcher()

    def _resolve(self, spec: ProbeSpec, module: locations.ModuleBeingImported | None) -> locations.Resolution:
        if spec.kind in LINE_KINDS:
            assert spec.file is not None and spec.line is not None
            return locations.resolve_line(spec.file, spec.line, self.backend.original, self.backend.live_frames, module)
        assert spec.module is not None and spec.qualname is not None
        return locations.resolve_function(spec.module, spec.qualname, self.backend.original, module)

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
                self._report(probe.id, ev.PENDING, reason=res.message)
            return False
        if res.status == locations.ERROR:
            probe.enabled = False
            self._set_state(entry, FAILED, res.message)
            self._report(probe.id, ev.ERROR, error=res.message)
            return False
        changed = self._attach(entry, res.targets)
        notes: list[str] = []
        if module is None:
            try:
                notes = self.backend.apply(self._plans, changed, entry.paths)
            except Exception as exc:
                self._fail_install(entry, exc)
                return False
        if self.tracer_seen or trace_function_active():
            self.tracer_seen = True
            notes.append(
                "a trace function (a debugger or coverage tool) is active in this process; keyhole leaves it in "
                "place" + ("" if self.backend.live_frames else ", and it will see keyhole's injected calls")
            )
        probe.installed = True
        self._set_state(entry, INSTALLED)
        self._report(probe.id, ev.INSTALLED, locations=entry.locations, backend=self.backend.name, notes=notes or None)
        return True

    def _fail_install(self, entry: Entry, exc: Exception) -> None:
        """Instrumenting failed part way: take out whatever was put in, and say why."""
        changed = self._detach(entry)
        try:
            if changed:
                self.backend.apply(self._plans, changed, entry.paths)
        except Exception:
            pass  # the original error is the one to report
        entry.probe.enabled = False
        self._set_state(entry, FAILED, f"could not instrument: {type(exc).__name__}: {exc}")
        self._report(entry.probe.id, ev.ERROR, error=entry.message)

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
        with self.lock:
            entry = self._entries.get(probe_id)
            if entry is None:
                return
            entry.probe.enabled = False
            changed = self._detach(entry)
            if changed:
                self.backend.apply(self._plans, changed, entry.paths)
            if final_state == REMOVED or entry.state in (INSTALLED, PENDING, INSTALLING):
                self._set_state(entry, final_state, message)
            self._refresh_watcher()

    def take_out_all(self) -> None:
        """The agent stops: report what each probe leaves unsaid, take every probe out, and stop the
        backend and the import hook."""
        with self.lock:
            changed = []
            paths: set[str] = set()
            for entry in self.entries():
                probe = entry.probe
                if entry.state == PENDING:
                    self._report(probe.id, ev.DISABLED, reason=f"never set before the agent stopped: {entry.message}")
                elif entry.state in (INSTALLED, INSTALLING):
                    self._report(probe.id, ev.STATS, **probe.stats())
                probe.enabled = False
                paths |= entry.paths
                changed.extend(self._detach(entry))
                if entry.state != REMOVED:
                    entry.state = STOPPED
            try:
                if changed:
                    self.backend.apply(self._plans, changed, paths)
            finally:
                self.backend.stop()
                import_watch.uninstall(self.watcher)

    def next_retry(self) -> float | None:
        """When the earliest pending probe should be resolved again (monotonic clock), if any."""
        with self.lock:
            times = [e.retry_at for e in self._entries.values() if e.state == PENDING]
        return min(times) if times else None

    def retry_pending(self, now: float) -> None:
        with self.lock:
            due = [e for e in self._entries.values() if e.state == PENDING and e.retry_at <= now]
        for entry in due:
            resolution = self._resolve(entry.probe.spec, None)
            with self.lock:
                if entry.state == PENDING:
                    self._apply_resolution(entry, resolution, None)
        if due:
            with self.lock:
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
        with self.lock:
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
                    code = self.backend.instrument_module(code, self._plans)
                except Exception as exc:
                    for entry in attached:
                        self._fail_install(entry, exc)
            self._refresh_watcher()
        return code

    def _on_main_code(self, code: CodeType) -> None:
        if self._main_watch is not None:
            self._on_module_code("__main__", self._main_watch, code)
