"""Log lines read the same whichever way keyhole builds them: one %-format for plain locals, the
evaluator for everything else."""

from __future__ import annotations

import enum

from keyhole.agent import Agent
from tests.agent.traps import CALLS, Trap
from tests.helpers import Collector, ModuleMaker, line_of, rel

SOURCE = """
import enum

class Level(enum.IntEnum):
    HIGH = 3

RATE = 0.5

def handle(name, count, ratio, flag, nothing, level, items):
    seen = 1  # L-here
    return seen
"""


def _log(modules: ModuleMaker, agent: Agent, collector: Collector, template: str, *args: object) -> str:
    module, path = modules.load(SOURCE)
    spec = {"id": "p", "kind": "log", "file": rel(path), "line": line_of(path, "L-here"), "template": template}
    agent.add_probe(spec).wait()
    module.handle(*args)
    message: str = collector.wait("p", "log")[0]["message"]
    return message


def test_plain_locals_are_formatted_as_python_shows_them(
    modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    message = _log(
        modules,
        agent,
        collector,
        "100% {name} n={count} r={ratio} f={flag} none={nothing}%s",
        "bob",
        7,
        0.25,
        True,
        None,
        None,
        [],
    )
    assert message == "100% bob n=7 r=0.25 f=True none=None%s"


def test_a_huge_string_local_is_cut_and_marked_without_copying_it_whole(
    modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    message = _log(modules, agent, collector, "[{name}]", "x" * 10_000_000, 0, 0.0, False, None, None, [])
    assert message.startswith("[xxx") and len(message) <= 4096 + 20


def test_other_values_and_names_take_the_evaluator(modules: ModuleMaker, agent: Agent, collector: Collector) -> None:
    message = _log(
        modules,
        agent,
        collector,
        "level={level} items={items} rate={RATE} missing={nope}",
        "bob",
        1,
        0.0,
        False,
        None,
        enum.IntEnum("Level", "HIGH")(1),
        [1, 2],
    )
    assert message == "level=1 items=[1, 2] rate=0.5 missing=<error: name 'nope' is not defined at this line>"


def test_an_int_too_long_to_print_is_an_error_event_and_the_probe_goes_on(
    modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    module, path = modules.load(SOURCE)
    line = line_of(path, "L-here")
    for probe_id, template in (("fast", "n={count}"), ("slow", "n={count} r={RATE}"), ("expr", "n={count + 1}")):
        agent.add_probe({"id": probe_id, "kind": "log", "file": rel(path), "line": line, "template": template}).wait()
    module.handle("bob", 10**5000, 0.0, False, None, None, [])
    module.handle("bob", 7, 0.0, False, None, None, [])
    for probe_id in ("fast", "slow", "expr"):
        logs = collector.wait(probe_id, "log", count=2)
        assert "too long to print" in logs[0]["message"], logs[0]
        assert logs[1]["message"].startswith("n=" + ("8" if probe_id == "expr" else "7"))
        errors = collector.of(probe_id, "error")
        assert errors and "too long to print" in errors[0]["error"]
        assert not collector.of(probe_id, "disabled")


def test_the_fast_path_never_hashes_a_locals_class(modules: ModuleMaker, agent: Agent, collector: Collector) -> None:
    CALLS.clear()
    message = _log(modules, agent, collector, "{name} {count}", Trap(), 1, 0.0, False, None, None, [])
    assert CALLS == []
    assert message.startswith("tests.agent.traps.Trap(") or message.startswith("<"), message
