"""The agent is a guest: it never raises into the application, never changes its exceptions, leaves
nothing behind after stop(), survives fork(), and does not take over another tool's instrumentation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import traceback
from pathlib import Path

import pytest

from keyhole.agent import Agent, AgentStateError, BackendUnavailable
from tests.helpers import Collector, ModuleMaker, line_of, rel

SOURCE = """
class Account:
    def __init__(self):
        self.balance = 10

    @property
    def explodes(self):
        raise RuntimeError("a property ran")


def work(x):
    account = Account()
    total = x + account.balance  # L-work
    return total


def fail(x):
    value = x * 2  # L-fail
    raise KeyError(f"missing {value}")
"""


def test_a_failing_sink_never_reaches_the_application(modules: ModuleMaker) -> None:
    module, path = modules.load(SOURCE)

    def broken_sink(event: dict[str, object]) -> None:
        raise OSError("disk full")

    agent = Agent(broken_sink).start()
    try:
        agent.add_probe(
            {"id": "p", "kind": "log", "file": rel(path), "line": line_of(path, "L-work"), "template": "{x}"}
        ).wait()
        assert [module.work(i) for i in range(5)] == [10, 11, 12, 13, 14]
    finally:
        agent.stop()
    assert agent.dropped > 0


def test_expressions_never_run_properties_and_errors_stay_in_keyhole(
    modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    module, path = modules.load(SOURCE)
    line = line_of(path, "L-work")
    agent.add_probe(
        {"id": "p", "kind": "snapshot", "file": rel(path), "line": line, "condition": "account.explodes"}
    ).wait()
    assert module.work(1) == 11
    error = collector.wait("p", "error")[0]["error"]
    assert "is a property; keyhole never runs property code" in error


def test_application_exceptions_are_untouched(modules: ModuleMaker, agent: Agent, collector: Collector) -> None:
    module, path = modules.load(SOURCE)

    def run() -> tuple[type[BaseException], str, list[tuple[str, int, str]]]:
        try:
            module.fail(2)
        except KeyError as exc:
            frames = [(f.filename, f.lineno, f.name) for f in traceback.extract_tb(exc.__traceback__)]
            return type(exc), str(exc), frames
        raise AssertionError("no exception")

    before = run()
    for spec in (
        {"id": "f", "kind": "function", "function": f"{module.__name__}:fail"},
        {"id": "e", "kind": "exception", "function": f"{module.__name__}:fail", "exception": "KeyError"},
        {"id": "s", "kind": "snapshot", "file": rel(path), "line": line_of(path, "L-fail")},
    ):
        assert agent.add_probe(spec).wait() == "installed"
    assert run() == before
    collector.wait("e", "exception")
    collector.wait("s", "snapshot")


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_stop_leaves_no_thread_file_hook_or_tool_id(modules: ModuleMaker, tmp_path: Path) -> None:
    module, path = modules.load(SOURCE)
    threads_before = set(threading.enumerate())
    fds_before = _fd_count()
    meta_path_before = list(sys.meta_path)
    agent = Agent(tmp_path / "events.jsonl").start()
    agent.add_probe(
        {"id": "p", "kind": "log", "file": rel(path), "line": line_of(path, "L-work"), "template": "{x}"}
    ).wait()
    agent.add_probe({"id": "w", "kind": "snapshot", "file": "not/loaded/yet.py", "line": 3}).wait()
    assert any(type(f).__name__ == "ImportWatcher" for f in sys.meta_path)
    module.work(1)
    agent.stop()
    assert set(threading.enumerate()) == threads_before
    assert _fd_count() == fds_before
    assert sys.meta_path == meta_path_before
    if sys.version_info >= (3, 12):
        assert sys.monitoring.get_tool(4) is None
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["event"] == "stopped"
    assert module.work(2) == 12
    agent.stop()  # a second stop is harmless


def test_only_one_agent_runs_in_a_process(collector: Collector) -> None:
    agent = Agent(collector).start()
    try:
        with pytest.raises(AgentStateError, match="already running"):
            Agent(collector).start()
    finally:
        agent.stop()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring exists from Python 3.12")
def test_a_tool_already_holding_keyholes_monitoring_id_is_reported_not_overwritten(collector: Collector) -> None:
    sys.monitoring.use_tool_id(4, "someone-else")
    fds = _fd_count()
    try:
        with pytest.raises(BackendUnavailable, match="already held by 'someone-else'"):
            Agent(collector).start()
        with pytest.raises(BackendUnavailable):
            Agent(Path("/tmp") / f"keyhole-unused-{os.getpid()}.jsonl").start()
        assert sys.monitoring.get_tool(4) == "someone-else"
        assert _fd_count() == fds
    finally:
        sys.monitoring.free_tool_id(4)
        Path(f"/tmp/keyhole-unused-{os.getpid()}.jsonl").unlink(missing_ok=True)


def test_an_existing_trace_function_is_kept_and_reported(
    modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    _module, path = modules.load(SOURCE)
    seen: list[str] = []

    def tracer(frame: object, event: str, arg: object) -> None:
        seen.append(event)

    sys.settrace(tracer)
    try:
        agent.add_probe({"id": "p", "kind": "metric", "file": rel(path), "line": line_of(path, "L-work")}).wait()
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(None)
    installed = collector.wait("p", "installed")[0]
    if sys.version_info < (3, 12):
        assert any("trace function" in note for note in installed["notes"])


def test_counts_are_exact_and_hit_limits_hold_under_threads(
    modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    module, path = modules.load(SOURCE)
    line = line_of(path, "L-work")
    agent.add_probe({"id": "count", "kind": "metric", "file": rel(path), "line": line}).wait()
    agent.add_probe(
        {
            "id": "logs",
            "kind": "log",
            "file": rel(path),
            "line": line,
            "template": "{x}",
            "rate": 100000,
            "max_hits": 100,
        }
    ).wait()

    def hammer() -> None:
        for i in range(5000):
            module.work(i)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    agent.remove_probe("count")
    assert collector.wait("count", "removed")[0]["hits"] == 40_000
    assert len(collector.wait("logs", "log", count=100)) == 100
    collector.wait("logs", "disabled")
    assert len(collector.of("logs", "log")) == 100


def test_the_agents_own_work_never_triggers_probes(tmp_path: Path) -> None:
    """A probe on the JSON encoder: the agent's thread encodes events with it, the app calls it too."""
    import json.encoder

    path = Path(json.encoder.__file__)
    line = line_of(path, "chunks = self.iterencode(o, _one_shot=True)")
    events_file = tmp_path / "events.jsonl"
    agent = Agent(events_file).start()
    try:
        agent.add_probe(
            {"id": "p", "kind": "log", "file": "json/encoder.py", "line": line, "template": "encode", "rate": 1000}
        ).wait()
        json.dumps({"a": [1, 2]})
        json.dumps({"b": [3]})
    finally:
        agent.stop()
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    logs = [e for e in events if e["probe"] == "p" and e["kind"] == "log"]
    assert len(logs) == 2
    assert {e["thread"] for e in logs} == {threading.current_thread().name}


FORK_SCRIPT = """
import os, sys, time, warnings
warnings.simplefilter("default")  # show DeprecationWarnings, as __main__ code would
sys.path.insert(0, {src!r})
from keyhole.agent import Agent
agent = Agent({events!r}).start()
import {module} as mod
spec = {{"id": "p", "kind": "log", "file": {file!r}, "line": {line}, "template": "x={{x}}", "rate": 1000}}
agent.add_probe(spec).wait()
mod.work(0)
children = []
for n in (1, 2):
    pid = os.fork()
    if pid == 0:
        mod.work(n)
        agent.stop()
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
mod.work(9)
agent.stop()
print("done")
"""


def test_forked_children_get_a_clean_agent_that_keeps_probing(modules: ModuleMaker, tmp_path: Path) -> None:
    module_name, path = modules.write(SOURCE)
    events = tmp_path / "events.jsonl"
    script = FORK_SCRIPT.format(
        src=str(modules.root), events=str(events), module=module_name, file=rel(path), line=line_of(path, "L-work")
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "done\n"
    # The agent's thread is paused around fork(): CPython has no other thread to warn about.
    assert run.stderr == ""
    records = [json.loads(line) for line in events.read_text().splitlines()]
    logs = sorted((r["message"], r["pid"]) for r in records if r["kind"] == "log")
    parent = next(r["pid"] for r in records if r["kind"] == "agent" and not r.get("forked_from"))
    assert [m for m, _ in logs] == ["x=0", "x=1", "x=2", "x=9"]
    assert dict(logs)["x=0"] == parent and dict(logs)["x=9"] == parent
    assert len({dict(logs)["x=1"], dict(logs)["x=2"], parent}) == 3
    forked = [r for r in records if r["kind"] == "agent" and r.get("forked_from") == parent]
    assert len(forked) == 2
    stops = [r for r in records if r["kind"] == "agent" and r.get("event") == "stopped"]
    assert len(stops) == 3
    # Each process counts its own hits: the children start from zero.
    hits = {r["pid"]: r["hits"] for r in records if r["kind"] == "stats" and r["probe"] == "p"}
    assert hits[parent] == 2 and sorted(v for k, v in hits.items() if k != parent) == [1, 1]
