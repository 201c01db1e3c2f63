"""Budgets and limits: rate, hit limit, expiry, process capture rate, CPU budget, expression cost, errors."""

from __future__ import annotations

import time

from keyhole.agent import Agent
from tests.helpers import Collector, ModuleMaker, line_of, rel

SOURCE = """
def work(x, items):
    total = x + 1  # L-work
    return total
"""


def _setup(modules: ModuleMaker) -> tuple[object, str, int]:
    module, path = modules.load(SOURCE)
    return module, rel(path), line_of(path, "L-work")


def test_rate_limit_drops_hits_over_the_rate(modules: ModuleMaker, agent: Agent, collector: Collector) -> None:
    module, file, line = _setup(modules)
    agent.add_probe({"id": "p", "kind": "log", "file": file, "line": line, "template": "{x}", "rate": 2}).wait()
    for i in range(200):
        module.work(i, [])  # type: ignore[attr-defined]
    agent.remove_probe("p")
    removed = collector.wait("p", "removed")[0]
    logs = collector.of("p", "log")  # removal is handled after the queued log events
    # A burst of at most 2 (the rate) passes at once; the rest waits for the rate.
    assert 1 <= len(logs) <= 3
    assert removed["hits"] == 200 and removed["suppressed"] >= 197


def test_hit_limit_disables_the_probe_and_says_why(modules: ModuleMaker, agent: Agent, collector: Collector) -> None:
    module, file, line = _setup(modules)
    agent.add_probe({"id": "p", "kind": "log", "file": file, "line": line, "template": "{x}", "max_hits": 3}).wait()
    for i in range(20):
        module.work(i, [])  # type: ignore[attr-defined]
    assert collector.wait("p", "disabled")[0]["reason"] == "hit limit reached (3 events)"
    assert [e["message"] for e in collector.wait("p", "log", count=3)] == ["0", "1", "2"]
    assert agent.wait_settled("p", 2) == "disabled"


def test_snapshot_defaults_are_one_per_second_and_ten_in_all(
    modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    module, file, line = _setup(modules)
    agent.add_probe({"id": "p", "kind": "snapshot", "file": file, "line": line}).wait()
    for i in range(50):
        module.work(i, [])  # type: ignore[attr-defined]
    collector.wait("p", "snapshot")
    time.sleep(0.3)
    assert len(collector.of("p", "snapshot")) == 1
    spec = agent.probes()[0]["spec"]
    assert (spec["rate"], spec["max_hits"], spec["ttl"]) == (1.0, 10, 900.0)


def test_expired_probe_is_removed_on_the_agents_own_clock(
    modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    module, file, line = _setup(modules)
    agent.add_probe({"id": "p", "kind": "metric", "file": file, "line": line, "ttl": "500ms"}).wait()
    module.work(1, [])  # type: ignore[attr-defined]
    reason = collector.wait("p", "disabled", timeout=3)[0]["reason"]
    assert reason.startswith("expired")
    assert agent.wait_settled("p", 2) == "disabled"
    before = agent.probes()[0]["hits"]
    module.work(2, [])  # type: ignore[attr-defined]
    assert agent.probes()[0]["hits"] == before  # instrumentation is gone, not just muted


def test_process_capture_rate_limits_all_probes_together(modules: ModuleMaker, collector: Collector) -> None:
    module, file, line = _setup(modules)
    agent = Agent(collector).start()
    try:
        agent.capture_limiter.__init__(5.0, burst=5)  # a small process-wide budget for the test
        for n in range(3):
            agent.add_probe(
                {"id": f"s{n}", "kind": "snapshot", "file": file, "line": line, "rate": 1000, "max_hits": 1000}
            ).wait()
        for i in range(100):
            module.work(i, [])  # type: ignore[attr-defined]
    finally:
        agent.stop()
    assert len(collector.of(kind="snapshot")) <= 6


def test_cpu_budget_disables_the_most_expensive_probe(modules: ModuleMaker, collector: Collector) -> None:
    module, file, line = _setup(modules)
    # A budget of 0.1% of 10 s: 10 ms, which a hot snapshot probe passes quickly.
    agent = Agent(collector, cpu_budget=0.001).start()
    try:
        agent.capture_limiter.__init__(1e9)
        agent.add_probe(
            {"id": "hot", "kind": "snapshot", "file": file, "line": line, "rate": 100000, "max_hits": 10**7}
        ).wait()
        agent.add_probe({"id": "cold", "kind": "metric", "file": file, "line": line}).wait()
        deadline = time.monotonic() + 10
        while not collector.of("hot", "disabled") and time.monotonic() < deadline:
            module.work(1, list(range(50)))  # type: ignore[attr-defined]
        reason = collector.wait("hot", "disabled", timeout=1)[0]["reason"]
        assert reason.startswith("process CPU budget exceeded")
        assert not collector.of("cold", "disabled")
    finally:
        agent.stop()


def test_expression_over_its_step_budget_disables_the_probe(
    modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    module, file, line = _setup(modules)
    spec = {"id": "p", "kind": "log", "file": file, "line": line, "template": "{sum(items)}", "rate": 1000}
    agent.add_probe(spec).wait()
    module.work(1, list(range(10)))  # type: ignore[attr-defined]
    module.work(1, list(range(100_000)))  # type: ignore[attr-defined]
    reason = collector.wait("p", "disabled")[0]["reason"]
    assert reason.startswith("expression cost budget exceeded")
    assert [e["message"] for e in collector.wait("p", "log")] == ["45"]


def test_runtime_errors_become_events_and_repeated_errors_disable(
    modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    module, file, line = _setup(modules)
    spec = {"id": "p", "kind": "snapshot", "file": file, "line": line, "condition": "items[5] > 0", "rate": 1000}
    agent.add_probe(spec).wait()
    for _ in range(12):
        assert module.work(1, []) == 2  # type: ignore[attr-defined]
    error = collector.wait("p", "error")[0]["error"]
    assert "index 5 out of range" in error
    reason = collector.wait("p", "disabled")[0]["reason"]
    assert reason.startswith("expression failed 10 times in a row")
    # Error events are rate limited: not one per failed hit.
    assert len(collector.of("p", "error")) < 10


def test_log_template_errors_are_shown_inline(modules: ModuleMaker, agent: Agent, collector: Collector) -> None:
    module, file, line = _setup(modules)
    spec = {"id": "p", "kind": "log", "file": file, "line": line, "template": "x={x} missing={nope}"}
    agent.add_probe(spec).wait()
    module.work(7, [])  # type: ignore[attr-defined]
    message = collector.wait("p", "log")[0]["message"]
    assert message == "x=7 missing=<error: name 'nope' is not defined at this line>"
