"""Every probe kind in every place code can be: functions, methods, closures, decorated functions,
generators, coroutines, async generators, threads, module-level code, and modules imported later."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import pytest

from keyhole.agent import Agent
from tests.agent.shapes import SHAPES, SHAPES_SOURCE, call
from tests.helpers import Collector, ModuleMaker, line_of, rel

LINE_KINDS = ["snapshot", "log", "metric"]


def _line_spec(kind: str, file: str, line: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"id": "p", "kind": kind, "file": file, "line": line}
    if kind == "snapshot":
        spec.update(watch=["x"], rate=1000, max_hits=100)
    elif kind == "log":
        spec.update(template="x={x}", rate=1000)
    else:
        spec.update(value="x")
    return spec


def _check_line_event(collector: Collector, kind: str, line: int, qualname: str, x: int) -> None:
    if kind == "snapshot":
        event = collector.wait("p", "snapshot")[0]
        top = event["frames"][0]
        assert (top["line"], top["function"]) == (line, qualname)
        assert top["locals"]["x"] == x
        assert event["watch"] == {"x": x}
        assert event["thread"] and event["ts"].endswith("Z")
    elif kind == "log":
        assert collector.wait("p", "log")[0]["message"] == f"x={x}"
    else:
        report = collector.wait("p", "metric", where=lambda e: e["count"] > 0)[0]
        assert report["min"] == x and report["count"] >= 1


@pytest.mark.parametrize("when", ["loaded", "imported-later"])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("kind", LINE_KINDS)
def test_line_probe_fires_in_every_shape(
    kind: str, shape: str, when: str, modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    module_name, path = modules.write(SHAPES_SOURCE)
    marker, qualname = SHAPES[shape]
    line = line_of(path, marker)
    if when == "loaded":
        importlib.import_module(module_name)
    state = agent.add_probe(_line_spec(kind, rel(path), line)).wait()
    assert state == ("installed" if when == "loaded" else "pending")
    module = importlib.import_module(module_name)
    collector.wait("p", "installed")

    result = call(module, shape, 3)

    _check_line_event(collector, kind, line, qualname, 3)
    agent.remove_probe("p")
    collector.wait("p", "removed")
    assert call(module, shape, 3) == result  # the probe changed nothing the program can see


@pytest.mark.parametrize("kind", LINE_KINDS)
def test_module_level_line_fires_when_set_before_import(
    kind: str, modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    module_name, path = modules.write(SHAPES_SOURCE)
    line = line_of(path, "L-module")
    spec = {"id": "p", "kind": kind, "file": rel(path), "line": line}
    if kind == "log":
        spec["template"] = "importing"
    assert agent.add_probe(spec).wait() == "pending"
    module = importlib.import_module(module_name)
    assert module.MODULE_VALUE == 42
    if kind == "snapshot":
        event = collector.wait("p", "snapshot")[0]
        assert event["frames"][0]["function"] == "<module>"
        assert event["frames"][0]["line"] == line
    elif kind == "log":
        assert collector.wait("p", "log")[0]["message"] == "importing"
    else:
        assert collector.wait("p", "metric", where=lambda e: e["count"] > 0)[0]["count"] == 1


def test_module_level_line_of_a_loaded_module_is_refused_with_the_reason(
    modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    _, path = modules.load(SHAPES_SOURCE)
    state = agent.add_probe({"id": "p", "kind": "snapshot", "file": rel(path), "line": line_of(path, "L-module")})
    assert state.wait() == "error"
    assert "module-level code" in collector.wait("p", "error")[0]["error"]


@pytest.mark.parametrize("when", ["loaded", "imported-later"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_function_probe_reports_entry_and_exit_in_every_shape(
    shape: str, when: str, modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    module_name, _path = modules.write(SHAPES_SOURCE)
    _, qualname = SHAPES[shape]
    if when == "loaded":
        importlib.import_module(module_name)
    spec = {"id": "p", "kind": "function", "function": f"{module_name}:{qualname}", "rate": 1000}
    agent.add_probe(spec).wait()
    module = importlib.import_module(module_name)
    collector.wait("p", "installed")

    result = call(module, shape, 3)
    entry, leave = collector.wait("p", "function", count=2)
    assert (entry["phase"], entry["call"]) == ("entry", 1)
    assert leave["phase"] == "return" and leave["call"] == 1 and leave["duration_ms"] >= 0
    if shape == "thread":
        # work() takes no arguments (x belongs to the enclosing function) and returns None.
        assert entry["args"] == {} and leave["return"] is None
    else:
        assert entry["args"]["x"] == 3
        assert set(entry["args"]) == {"method": {"self", "x"}, "classmethod": {"cls", "x"}}.get(shape, {"x"})
        assert leave["return"] == (None if shape in ("generator", "asyncgen") else result)

    with pytest.raises(ValueError, match="negative"):
        call(module, shape, -1)
    failed = collector.wait("p", "function", count=4)[3]
    assert failed["phase"] == "exception"
    assert failed["exception"]["@type"] == "ValueError"


@pytest.mark.parametrize("shape", list(SHAPES))
def test_exception_probe_captures_the_traceback_locals_in_every_shape(
    shape: str, modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    module, path = modules.load(SHAPES_SOURCE)
    _, qualname = SHAPES[shape]
    spec = {"id": "p", "kind": "exception", "function": f"{module.__name__}:{qualname}", "exception": "ValueError"}
    assert agent.add_probe(spec).wait() == "installed"

    assert call(module, shape, 3) is not None  # no exception: no event
    with pytest.raises(ValueError, match="negative") as raised:
        call(module, shape, -1)

    event = collector.wait("p", "exception")[0]
    assert event["exception"]["@type"] == "ValueError"
    assert event["exception"]["args"]["@items"] == ["negative"]
    innermost = event["frames"][0]
    assert innermost["function"] == qualname
    assert innermost["locals"]["x"] == -1
    # The application's exception is untouched: same object, same traceback line.
    tb = raised.value.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert "negative" in path.read_text().splitlines()[tb.tb_lineno - 1]
    assert len(collector.of("p", "exception")) == 1


def test_exception_probe_ignores_other_exception_types(
    modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    module, _ = modules.load(SHAPES_SOURCE)
    agent.add_probe(
        {"id": "p", "kind": "exception", "function": f"{module.__name__}:plain", "exception": "KeyError"}
    ).wait()
    with pytest.raises(ValueError):
        module.plain(-1)
    agent.add_probe(
        {"id": "q", "kind": "exception", "function": f"{module.__name__}:plain", "exception": "Exception"}
    ).wait()
    with pytest.raises(ValueError):
        module.plain(-1)
    collector.wait("q", "exception")
    assert collector.of("p", "exception") == []


def test_removing_a_probe_restores_the_original_code_exactly(
    modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    module, path = modules.load(SHAPES_SOURCE)
    functions = [module.plain, module.Shop.method, module.make_closure(1), module.gen]
    before = [(f.__code__, f.__code__.co_code, f.__code__.co_consts) for f in functions]
    specs = [
        {"id": "a", "kind": "snapshot", "file": rel(path), "line": line_of(path, "L-plain")},
        {"id": "b", "kind": "log", "file": rel(path), "line": line_of(path, "L-method"), "template": "m"},
        {"id": "c", "kind": "metric", "file": rel(path), "line": line_of(path, "L-closure")},
        {"id": "d", "kind": "function", "function": f"{module.__name__}:gen"},
        {"id": "e", "kind": "exception", "function": f"{module.__name__}:plain"},
    ]
    for spec in specs:
        assert agent.add_probe(spec).wait() == "installed"
    if sys.version_info < (3, 12):
        assert module.plain.__code__ is not before[0][0]  # 3.11 swaps in an instrumented copy
    for spec in specs:
        agent.remove_probe(spec["id"])
        collector.wait(spec["id"], "removed")
    after = [(f.__code__, f.__code__.co_code, f.__code__.co_consts) for f in functions]
    assert all(a[0] is b[0] and a[1] == b[1] and a[2] == b[2] for a, b in zip(after, before, strict=True))
    if sys.version_info >= (3, 12):
        for code, _, _ in before:
            assert sys.monitoring.get_local_events(4, code) == 0
    # A closure created after removal gets the original nested code too.
    assert module.make_closure(2).__code__ is before[2][0]


def test_a_line_with_no_code_is_refused_with_the_nearest_lines(
    modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    _, path = modules.load(SHAPES_SOURCE)
    blank = line_of(path, "class Shop:") - 1  # the blank line above the class
    assert agent.add_probe({"id": "p", "kind": "snapshot", "file": rel(path), "line": blank}).wait() == "error"
    error = collector.wait("p", "error")[0]["error"]
    assert f"{rel(path)}:{blank} has no code" in error
    assert "nearest lines with code:" in error


def test_a_file_matching_two_loaded_modules_is_refused_with_both_paths(
    modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    _, first = modules.load(SHAPES_SOURCE, name="twin")
    _, second = modules.load(SHAPES_SOURCE, name="twin")
    assert agent.add_probe({"id": "p", "kind": "snapshot", "file": "twin.py", "line": 5}).wait() == "error"
    error = collector.wait("p", "error")[0]["error"]
    assert "matches 2 loaded files" in error
    assert str(first) in error and str(second) in error


def test_a_function_that_does_not_exist_is_refused_with_suggestions(
    modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    module, _ = modules.load(SHAPES_SOURCE)
    handle = agent.add_probe({"id": "p", "kind": "function", "function": f"{module.__name__}:Shop.methd"})
    assert handle.wait() == "error"
    assert "did you mean Shop.method" in collector.wait("p", "error")[0]["error"]


def test_a_module_never_imported_is_reported_when_the_agent_stops(collector: Collector) -> None:
    agent = Agent(collector).start()
    agent.add_probe({"id": "p", "kind": "snapshot", "file": "never/imported.py", "line": 3}).wait()
    agent.stop()
    reason = collector.wait("p", "disabled")[0]["reason"]
    assert "never set" in reason and "never/imported.py" in reason
