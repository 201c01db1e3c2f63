"""Probe specifications: a bad spec is refused with one line naming the field and the fix."""

from __future__ import annotations

from typing import Any

import pytest

from keyhole.protocol import ProbeSpec, SpecError, parse_probe_file_data
from keyhole.protocol.durations import format_duration, parse_duration

GOOD = {"id": "p1", "kind": "snapshot", "file": "shop/orders.py", "line": 42}


def _refused(data: Any) -> str:
    with pytest.raises(SpecError) as raised:
        ProbeSpec.from_dict(data)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_the_issue_example_validates() -> None:
    data = {
        "probes": [
            {
                "id": "p1",
                "kind": "snapshot",
                "file": "shop/orders.py",
                "line": 42,
                "condition": "order.total > 100",
                "watch": ["order.id"],
                "max_hits": 3,
            },
            {
                "id": "p2",
                "kind": "log",
                "file": "shop/orders.py",
                "line": 50,
                "template": "user={user.id} total={order.total}",
                "rate": 1000,
            },
            {"id": "p3", "kind": "metric", "file": "shop/orders.py", "line": 50, "value": "order.total"},
            {"id": "p4", "kind": "function", "function": "shop.orders:Cart.checkout"},
            {"id": "p5", "kind": "exception", "function": "shop.orders:Cart.checkout", "exception": "ValueError"},
        ]
    }
    specs = parse_probe_file_data(data).probes
    assert [s.kind for s in specs] == ["snapshot", "log", "metric", "function", "exception"]
    assert specs[0].max_hits == 3 and specs[0].rate == 1.0
    assert specs[1].rate == 1000.0 and specs[1].max_hits == 1000
    assert specs[3].module == "shop.orders" and specs[3].qualname == "Cart.checkout"


def test_round_trip_through_the_wire_form() -> None:
    spec = ProbeSpec.from_dict({**GOOD, "watch": ["a.b"], "ttl": "2m", "reveal": ["pii"]})
    again = ProbeSpec.from_dict(spec.to_dict())
    assert again == spec
    assert again.ttl == 120.0


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], "a probe must be an object"),
        ({"kind": "snapshot"}, "missing field 'id'"),
        ({"id": "p1"}, "missing field 'kind'"),
        ({"id": "p1", "kind": "breakpoint"}, "unknown kind 'breakpoint'"),
        ({"id": "bad id!", "kind": "snapshot"}, "field 'id' must be"),
        ({"id": "p1", "kind": "snapshot", "file": "a.py"}, "missing field 'line'"),
        ({**GOOD, "line": "42"}, "field 'line' must be a line number"),
        ({**GOOD, "line": 0}, "field 'line' must be a line number"),
        ({**GOOD, "line": True}, "field 'line' must be a line number"),
        ({**GOOD, "file": "shop/orders.txt"}, "must name a Python source file"),
        ({**GOOD, "file": ""}, "field 'file' must be a path"),
        ({**GOOD, "template": "x"}, "field 'template' does not apply to snapshot probes"),
        ({**GOOD, "conditon": "x"}, "unknown field 'conditon'"),
        ({**GOOD, "max_hits": 0}, "field 'max_hits' must be an integer from 1"),
        ({**GOOD, "max_hits": 2.5}, "field 'max_hits' must be an integer"),
        ({**GOOD, "rate": -1}, "field 'rate' must be events per second"),
        ({**GOOD, "rate": "fast"}, "field 'rate' must be events per second"),
        ({**GOOD, "ttl": "25h"}, "field 'ttl' may be at most 24h"),
        ({**GOOD, "ttl": "soon"}, "field 'ttl' must be a duration"),
        ({**GOOD, "reveal": ["everything"]}, "unknown redaction class 'everything'"),
        ({**GOOD, "watch": ["x"] * 17}, "at most 16 expressions"),
        ({"id": "p1", "kind": "log", "file": "a.py", "line": 1}, "missing field 'template'"),
        ({"id": "p1", "kind": "function", "function": "shop.orders.Cart.checkout"}, "must be MODULE:QUALNAME"),
        ({"id": "p1", "kind": "exception", "function": "m:f", "exception": "not a type"}, "exception type name"),
        ({**GOOD, "condition": "order.total >"}, "not a Python expression"),
        ({**GOOD, "condition": "x.__class__"}, "dunder attribute"),
        ({**GOOD, "condition": "password == 'x'"}, "redacts"),
    ],
)
def test_bad_specs_are_refused_with_the_field_and_the_fix(data: Any, expected: str) -> None:
    assert expected in _refused(data)


def test_the_probe_id_is_named_in_the_error() -> None:
    assert _refused({**GOOD, "line": "x"}).startswith("probe 'p1': ")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], 'a probe file must be an object with a "probes" list'),
        ({"probe": []}, "unknown top-level field 'probe'"),
        ({"probes": []}, "is empty"),
        ({"probes": [GOOD, GOOD]}, "probe id 'p1' is used twice"),
        ({"probes": [GOOD], "redaction": {"names": "token"}}, "redaction.names must be a list"),
        ({"probes": [GOOD], "redaction": {"types": ["a b"]}}, "is not a glob"),
    ],
)
def test_bad_probe_files_are_refused(data: Any, expected: str) -> None:
    with pytest.raises(SpecError, match=expected.replace("(", r"\(")):
        parse_probe_file_data(data)


def test_redaction_rules_in_the_probe_file_apply_to_expressions() -> None:
    data = {"probes": [{**GOOD, "condition": "internal_ref == 1"}], "redaction": {"names": ["internal_ref"]}}
    with pytest.raises(SpecError, match="redacts"):
        parse_probe_file_data(data)
    exempted = {"probes": [{**GOOD, "condition": "session == 1"}], "redaction": {"exempt": ["session"]}}
    assert parse_probe_file_data(exempted).probes[0].condition == "session == 1"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("2h", 7200), ("1h30m", 5400), ("500ms", 0.5), ("1d", 86400), (90, 90), ("45", 45)],
)
def test_durations(text: Any, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0s", "-5m", "5 minutes", "1x", True, None, [1], float("nan"), float("inf")])
def test_bad_durations_are_refused(text: Any) -> None:
    with pytest.raises(SpecError):
        parse_duration(text)


def test_format_duration() -> None:
    assert [format_duration(s) for s in (900, 7200, 30, 0.5)] == ["15m", "2h", "30s", "0.5s"]
