"""The agent's own thread: finishes and writes events, installs probes, and runs the periodic checks
(expiry, CPU budget, metric reports, stack dumps, pending probes). Application threads never wait on it."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from keyhole.agent.core.probe_table import ProbeTable
from keyhole.agent.core.shipping import finish_event, wall_offset
from keyhole.agent.core.sinks import Sink
from keyhole.agent.core.states import ACTIVE, DISABLED, INSTALLED, REMOVED
from keyhole.agent.probes.agent_thread import AgentThread
from keyhole.agent.probes.base import Probe
from keyhole.agent.probes.function import FunctionProbe
from keyhole.agent.probes.metric import MetricProbe
from keyhole.agent.probes.stacks import StacksProbe
from keyhole.agent.reading.stacks import task_stacks, thread_stacks
from keyhole.protocol import events as ev
from keyhole.protocol.redaction import may_hold_secret

TICK = 0.25
BATCH = 512
STATS_EVERY = 10.0
_clock = time.monotonic


@dataclass
class Schedule:
    """The agent thread's timers and memory. It lives on the agent, so a thread paused around fork()
    carries on with the same CPU-budget accounting."""

    next_tick: float
    next_metrics: float
    next_stats: float
    seen_cost: dict[str, float] = field(default_factory=dict)
    seen_stats: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    reported_dropped: int = 0
    # Function probes disabled while calls are open: their exits still report, until a deadline.
    deferred: dict[str, float] = field(default_factory=dict)

    @classmethod
    def starting(cls, metric_interval: float) -> Schedule:
        now = _clock()
        return cls(now + TICK, now + metric_interval, now + STATS_EVERY)


DEFER_UNINSTALL = 30.0


class Host(Protocol):
    """What the agent's thread needs from its agent (keyhole.agent.core.agent.Agent)."""

    queue: queue.SimpleQueue[Any]
    schedule: Schedule
    table: ProbeTable
    sink: Sink
    hit_overhead: float
    metric_interval: float
    dropped: int
    pid: int

    def emit(self, event: dict[str, Any]) -> None: ...

    def report(self, probe_id: str | None, kind: str, **fields: Any) -> None: ...

    def metric_reports(self, final: bool) -> list[dict[str, Any]]: ...

    def check_budget(self, now: float, used: dict[str, float]) -> None: ...

    def teardown(self) -> None: ...


def calibrate() -> float:
    """Estimate what one hit costs before probe code runs: a C-to-Python callback, two dict lookups
    and a method call, about four empty Python calls on this machine."""

    class _Probe:
        def on_line(self, frame: object) -> None:
            return None

    probe = _Probe()
    rounds = 2000
    start = time.perf_counter()
    for _ in range(rounds):
        probe.on_line(None)
    return 4 * (time.perf_counter() - start) / rounds


def run_worker(agent: Host) -> None:
    AgentThread.ident = threading.get_ident()
    if not agent.hit_overhead:
        agent.hit_overhead = calibrate()
    schedule = agent.schedule
    q = agent.queue
    while True:
        now = _clock()
        wake = schedule.next_tick
        retry = agent.table.next_retry()
        if retry is not None and retry < wake:
            wake = retry
        AgentThread.busy = False
        try:
            item: Any = q.get(timeout=max(0.0, min(wake - now, TICK)))
        except queue.Empty:
            item = None
        AgentThread.busy = True
        events: list[dict[str, Any]] = []
        commands: list[tuple[Any, ...]] = []
        while item is not None:
            if type(item) is dict:
                events.append(item)
            else:
                commands.append(item)
            if len(events) >= BATCH:
                break
            try:
                item = q.get_nowait()
            except queue.Empty:
                item = None
        ship(agent, events)
        for command in commands:
            if command[0] == "stop":
                agent.teardown()
                return
            if command[0] == "pause":  # fork() is coming; the parent starts a new thread after it
                AgentThread.busy = False
                AgentThread.ident = -1
                return
            try:
                _handle(agent, command, schedule)
            except Exception as exc:  # a keyhole defect: report it, keep serving the other probes
                agent.report(
                    command[1] if len(command) > 1 else None,
                    ev.ERROR,
                    error=f"internal error in keyhole: {type(exc).__name__}: {exc}",
                )
        now = _clock()
        retry = agent.table.next_retry()
        if retry is not None and now >= retry:
            agent.table.retry_pending(now)
        if now >= schedule.next_tick:
            try:
                _periodic(agent, now, schedule)
            except Exception as exc:
                agent.report(None, ev.ERROR, error=f"internal error in keyhole: {type(exc).__name__}: {exc}")
            schedule.next_tick = now + TICK


def _handle(agent: Host, command: tuple[Any, ...], schedule: Schedule) -> None:
    name, probe_id = command[0], command[1]
    if name == "install":
        agent.table.install(probe_id)
        return
    probe = agent.table.probe(probe_id)
    if probe is None:
        return
    if name == "uninstall" and isinstance(probe, FunctionProbe) and probe.open_calls:
        # Calls already admitted still report their return or exception; uninstall once they are out.
        schedule.deferred.setdefault(probe_id, _clock() + DEFER_UNINSTALL)
        return
    _uninstall(agent, probe, REMOVED if name == "remove" else DISABLED)


def _uninstall(agent: Host, probe: Probe, state: str) -> None:
    agent.table.uninstall(probe.id, state)
    if isinstance(probe, MetricProbe) and probe.installed:
        report = probe.report(final=True)
        if report is not None:
            agent.emit(report)
    if state == REMOVED:
        agent.report(probe.id, ev.REMOVED, **probe.stats())
        agent.table.forget(probe.id)


def ship(agent: Host, events: list[dict[str, Any]]) -> None:
    if not events:
        return
    probes = {e.probe.id: e.probe for e in agent.table.entries()}
    finished: list[dict[str, Any]] = []
    offset = wall_offset()
    names: dict[int, str] = {}
    # Log lines are most of a busy batch, and most hold nothing a value rule could match: test them
    # all at once, and test one by one only when that finds something.
    messages = [m for m in (e.get("message") for e in events) if type(m) is str]
    clean = bool(messages) and not may_hold_secret("\0".join(messages))
    for event in events:
        start = time.perf_counter()
        probe = probes.get(event.get("probe") or "")
        try:
            reveal = probe.spec.reveal if probe is not None else ()
            finished.append(finish_event(event, agent.pid, reveal, offset, names, clean_message=clean))
        except Exception as exc:
            finished.append(
                {
                    "probe": event.get("probe"),
                    "kind": ev.ERROR,
                    "pid": agent.pid,
                    "error": f"internal error in keyhole while finishing an event: {type(exc).__name__}",
                }
            )
        if probe is not None:
            probe.ship_cost += time.perf_counter() - start
    try:
        agent.sink.write(finished)
    except Exception:
        agent.dropped += len(finished)


def _periodic(agent: Host, now: float, schedule: Schedule) -> None:
    entries = agent.table.entries()
    clock = time.perf_counter()
    used: dict[str, float] = {}
    for entry in entries:
        probe = entry.probe
        if probe.enabled and entry.state in ACTIVE and clock >= probe.expires:
            probe.expire()
        total = probe.cost + probe.ship_cost + probe.hits * agent.hit_overhead
        delta = total - schedule.seen_cost.get(probe.id, 0.0)
        if delta > 0:
            used[probe.id] = delta
            schedule.seen_cost[probe.id] = total
        if isinstance(probe, StacksProbe) and probe.enabled and entry.state == INSTALLED:
            _take_stacks(agent, probe, clock)
    for probe_id, deadline in list(schedule.deferred.items()):
        waiting = agent.table.probe(probe_id)
        if not isinstance(waiting, FunctionProbe) or not waiting.open_calls or now >= deadline:
            del schedule.deferred[probe_id]
            if waiting is not None:
                _uninstall(agent, waiting, DISABLED)
    agent.check_budget(now, used)
    if now >= schedule.next_metrics:
        for report in agent.metric_reports(final=False):
            agent.emit(report)
        schedule.next_metrics = now + agent.metric_interval
    if agent.dropped > schedule.reported_dropped:
        agent.report(None, ev.DROPPED, count=agent.dropped - schedule.reported_dropped)
        schedule.reported_dropped = agent.dropped
    if now >= schedule.next_stats:
        schedule.next_stats = now + STATS_EVERY
        for entry in entries:
            probe = entry.probe
            key = (probe.hits, probe.admitted, probe.suppressed, probe.errors)
            if entry.state == INSTALLED and schedule.seen_stats.get(probe.id) != key and probe.hits:
                schedule.seen_stats[probe.id] = key
                agent.report(probe.id, ev.STATS, **probe.stats())


def _take_stacks(agent: Host, probe: StacksProbe, clock: float) -> None:
    if probe.next_at is None or clock < probe.next_at:
        return
    threads = thread_stacks(AgentThread.ident)
    agent.report(probe.id, ev.STACKS, threads=threads, tasks=task_stacks())
    probe.taken()
    if probe.spec.every:
        probe.next_at = clock + probe.spec.every
    else:
        probe.next_at = None
        probe.disable("done: the stacks were taken")
