"""On-demand stacks (threads and asyncio tasks), stacks probes, and redaction rules changed at run time."""

from __future__ import annotations

import asyncio
import sys
import threading
import time

import pytest

from keyhole.agent import Agent
from keyhole.protocol.redaction import RedactionRules
from tests.helpers import Collector, ModuleMaker, line_of, rel


def _parked(event: threading.Event) -> None:
    event.wait(10)


async def _inner(release: asyncio.Event) -> None:
    await release.wait()


async def _outer(release: asyncio.Event) -> None:
    await _inner(release)


def test_stacks_show_every_thread_and_every_asyncio_task(agent: Agent) -> None:
    stop = threading.Event()
    parked = threading.Thread(target=_parked, args=(stop,), name="parked-thread")
    parked.start()
    loop_ready = threading.Event()
    holder: dict[str, object] = {}

    def run_loop() -> None:
        async def main() -> None:
            release = asyncio.Event()
            holder["release"], holder["loop"] = release, asyncio.get_running_loop()
            task = asyncio.create_task(_outer(release), name="order-task")
            loop_ready.set()
            await task

        asyncio.run(main())

    looper = threading.Thread(target=run_loop, name="loop-thread")
    looper.start()
    try:
        assert loop_ready.wait(5)
        time.sleep(0.1)
        stacks = agent.stacks()
    finally:
        stop.set()
        loop = holder["loop"]
        loop.call_soon_threadsafe(holder["release"].set)  # type: ignore[attr-defined]
        parked.join()
        looper.join()
    threads = {t["name"]: t for t in stacks["threads"]}
    assert "keyhole-agent" not in threads
    assert any(f["function"] == "_parked" for f in threads["parked-thread"]["frames"])
    assert any(
        f["function"] == "test_stacks_show_every_thread_and_every_asyncio_task" for f in threads["MainThread"]["frames"]
    )
    task = next(t for t in stacks["tasks"] if t["name"] == "order-task")
    assert [f["function"] for f in task["frames"]] == ["_outer", "_inner", "Event.wait"]
    assert task["awaiting"].startswith("_asyncio.Future")  # the future (its iterator) it waits on
    assert not task["done"]


def test_a_stacks_probe_takes_them_when_scheduled(agent: Agent, collector: Collector) -> None:
    assert agent.add_probe({"id": "s", "kind": "stacks", "after": "200ms"}).wait() == "installed"
    event = collector.wait("s", "stacks", timeout=3)[0]
    assert any(t["name"] == "MainThread" for t in event["threads"])
    assert collector.wait("s", "disabled")[0]["reason"] == "done: the stacks were taken"


SOURCE = """
def handle(tenant, contact):
    seen = 1  # L-here
    return seen
"""


def test_redaction_rules_change_without_a_restart(modules: ModuleMaker, agent: Agent, collector: Collector) -> None:
    module, path = modules.load(SOURCE)
    line = line_of(path, "L-here")
    agent.add_probe({"id": "snap", "kind": "snapshot", "file": rel(path), "line": line, "rate": 100}).wait()
    agent.add_probe({"id": "log", "kind": "log", "file": rel(path), "line": line, "template": "{tenant}"}).wait()
    module.handle("acme", "bob@example.com")
    first = collector.wait("snap", "snapshot")[0]["frames"][0]["locals"]
    assert first["tenant"] == "acme" and first["contact"] == {"@redacted": "pii"}

    agent.set_redaction(RedactionRules.build(names=["tenant"]))
    assert "reads 'tenant'" in collector.wait("log", "disabled")[0]["reason"]
    time.sleep(1.1)  # the snapshot probe's rate: one per second
    module.handle("acme", "bob@example.com")
    second = collector.wait("snap", "snapshot", count=2)[1]["frames"][0]["locals"]
    assert second["tenant"] == {"@redacted": "secret"}


def test_reveal_shows_a_class_to_the_probe_that_asks(modules: ModuleMaker, agent: Agent, collector: Collector) -> None:
    module, path = modules.load(SOURCE)
    spec = {
        "id": "p",
        "kind": "log",
        "file": rel(path),
        "line": line_of(path, "L-here"),
        "template": "{contact}",
        "reveal": ["pii"],
    }
    agent.add_probe(spec).wait()
    module.handle("acme", "bob@example.com")
    assert collector.wait("p", "log")[0]["message"] == "bob@example.com"


RUNNING = """
import threading

def worker(stop, seen):
    n = 0
    while not stop.is_set():
        n += 1  # L-loop
        seen.append(n)
        stop.wait(0.01)
"""


def test_frames_already_running_see_the_probe_or_are_reported(
    modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    module, path = modules.load(RUNNING)
    stop, seen = threading.Event(), []
    thread = threading.Thread(target=module.worker, args=(stop, seen))
    thread.start()
    try:
        while not seen:
            time.sleep(0.01)
        spec = {"id": "p", "kind": "log", "file": rel(path), "line": line_of(path, "L-loop"), "template": "n={n}"}
        assert agent.add_probe(spec).wait() == "installed"
        installed = collector.wait("p", "installed")[0]
        if sys.version_info >= (3, 12):
            collector.wait("p", "log")  # sys.monitoring reaches the loop that is already running
        else:
            notes = installed.get("notes", [])
            assert any("already running" in n for n in notes), installed
    finally:
        stop.set()
        thread.join()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="3.11 cannot reach a frame that is already running")
def test_a_suspended_generator_sees_a_probe_set_while_it_waits(
    modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    module, path = modules.load("""
def numbers():
    for n in range(3):
        yield n  # L-yield
""")
    gen = module.numbers()
    assert next(gen) == 0
    agent.add_probe(
        {"id": "p", "kind": "log", "file": rel(path), "line": line_of(path, "L-yield"), "template": "{n}"}
    ).wait()
    assert list(gen) == [1, 2]
    assert [e["message"] for e in collector.wait("p", "log", count=2)] == ["1", "2"]
