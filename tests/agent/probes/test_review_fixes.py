"""Regressions for problems a review found: each test names what must hold."""

from __future__ import annotations

import datetime
import sys
import threading
import time
from typing import Any

from keyhole.agent import Agent
from keyhole.agent.errors import EvalError
from keyhole.agent.reading.capture import Capturer, NameFilter
from keyhole.agent.reading.evaluator import compile_expression
from keyhole.agent.reading.scope import Scope
from keyhole.protocol.expression import check_expression
from keyhole.protocol.redaction import DEFAULT_RULES, RedactionRules
from tests.agent.traps import CALLS
from tests.helpers import Collector, ModuleMaker, line_of, rel


class RecordingZone(datetime.tzinfo):
    def utcoffset(self, dt: object) -> datetime.timedelta:
        CALLS.append("utcoffset")
        return datetime.timedelta(hours=1)

    def tzname(self, dt: object) -> str:
        CALLS.append("tzname")
        return "X"

    def dst(self, dt: object) -> datetime.timedelta:
        CALLS.append("dst")
        return datetime.timedelta(0)


def test_an_aware_datetime_with_an_application_tzinfo_is_read_from_its_fields() -> None:
    moment = datetime.datetime(2026, 11, 21, 10, 30, 5, 7, tzinfo=RecordingZone())
    CALLS.clear()
    captured = Capturer(NameFilter(DEFAULT_RULES)).value(moment)
    scope = Scope(sys._getframe())
    scope.locals = {"moment": moment}
    compiled = compile_expression(check_expression("moment == moment"), DEFAULT_RULES)
    try:
        compiled.evaluate(scope)
    except EvalError:
        pass
    assert CALLS == []
    assert captured["@value"] == f"2026-11-21T10:30:05.000007 ({__name__}.RecordingZone)"
    utc = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    assert Capturer(NameFilter(DEFAULT_RULES)).value(utc)["@value"] == "2026-01-01T00:00:00+00:00"


SOURCE = """
def handle(data, key, blob):
    seen = 1  # L-here
    return seen
"""


def test_changed_rules_reach_the_key_checks_of_existing_expressions(
    modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    module, path = modules.load(SOURCE)
    spec = {"id": "p", "kind": "log", "file": rel(path), "line": line_of(path, "L-here"), "template": "{data[key]}"}
    agent.add_probe(spec).wait()
    module.handle({"tenant": "acme"}, "tenant", "")
    assert collector.wait("p", "log")[0]["message"] == "acme"
    agent.set_redaction(RedactionRules.build(names=["tenant"]))
    module.handle({"tenant": "acme"}, "tenant", "")
    message = collector.wait("p", "log", count=2)[1]["message"]
    assert "acme" not in message and "is redacted" in message


def test_a_secret_across_the_log_line_limit_is_redacted_whole(
    modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    module, path = modules.load(SOURCE)
    spec = {"id": "p", "kind": "log", "file": rel(path), "line": line_of(path, "L-here"), "template": "{blob}"}
    agent.add_probe(spec).wait()
    module.handle({}, "", "x" * 4085 + " 4111 1111 1111 1111 and on" + "y" * 3000)
    message = collector.wait("p", "log")[0]["message"]
    assert "4111" not in message and message.endswith("[redacted:card]")


def test_a_format_spec_that_does_not_fit_is_an_error_event_not_a_stop(
    modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    module, path = modules.load(SOURCE)
    spec = {"id": "p", "kind": "log", "file": rel(path), "line": line_of(path, "L-here"), "template": "{blob:d}"}
    agent.add_probe(spec).wait()
    module.handle({}, "", "text")
    assert "does not fit" in collector.wait("p", "error")[0]["error"]
    assert not collector.of("p", "disabled")


CLASS_BODY = """
CALLS = []


class Recording(dict):
    def __getitem__(self, key):
        CALLS.append("getitem")
        return dict.__getitem__(self, key)

    def get(self, key, default=None):
        CALLS.append("get")
        return dict.get(self, key, default)

    def items(self):
        CALLS.append("items")
        return dict.items(self)


class Meta(type):
    @classmethod
    def __prepare__(mcs, name, bases):
        return Recording()


def build():
    class Body(metaclass=Meta):
        x = 1
        y = 2  # L-body
    return Body
"""


def test_locals_that_are_an_application_mapping_are_not_read(
    modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    module, path = modules.load(CLASS_BODY)
    module.build()
    own = list(module.CALLS)  # what the class body does with its namespace by itself
    spec = {"id": "p", "kind": "snapshot", "file": rel(path), "line": line_of(path, "L-body"), "watch": ["x"]}
    agent.add_probe(spec).wait()
    module.CALLS.clear()
    module.build()
    event = collector.wait("p", "snapshot")[0]
    assert own == module.CALLS
    assert "application mapping" in event["frames"][0]["locals"]["@error"]
    assert "application mapping" in event["watch"]["x"]["@error"]


SLOW = """
import time


def slow(x):
    time.sleep(0.3)
    return x * 2
"""


def test_the_last_admitted_call_still_reports_its_return(
    modules: ModuleMaker, agent: Agent, collector: Collector
) -> None:
    module, _ = modules.load(SLOW)
    agent.add_probe({"id": "p", "kind": "function", "function": f"{module.__name__}:slow", "max_hits": 1}).wait()
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(module.slow(4)))
    thread.start()
    collector.wait("p", "disabled", timeout=5)  # the hit limit is reached on entry...
    thread.join()
    leave = collector.wait("p", "function", count=2)[1]  # ...and the exit is still reported
    assert (leave["phase"], leave["return"], results) == ("return", 8, [8])
    time.sleep(0.5)
    assert agent.probe_state("p") == "disabled"


def test_a_removed_metric_reports_its_last_interval(modules: ModuleMaker, collector: Collector) -> None:
    module, path = modules.load(SOURCE)
    agent = Agent(collector, metric_interval=60).start()
    try:
        agent.add_probe({"id": "m", "kind": "metric", "file": rel(path), "line": line_of(path, "L-here")}).wait()
        for _ in range(3):
            module.handle({}, "", "")
        agent.remove_probe("m")
        final = collector.wait("m", "metric")[0]
        assert (final["count"], final["final"]) == (3, True)
        assert agent.probe_state("m") == "removed"
    finally:
        agent.stop()
