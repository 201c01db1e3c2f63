"""The bounded serializer: representations, limits, redaction, and what reaches the events file."""

from __future__ import annotations

import datetime
import decimal
import enum
import json
import uuid
from typing import Any

from keyhole.agent.core.shipping import encode, finish_value
from keyhole.agent.reading.capture import Capturer, NameFilter
from keyhole.protocol.limits import CaptureLimits
from keyhole.protocol.redaction import DEFAULT_RULES, RedactionRules


class Status(enum.Enum):
    PAID = "paid"


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x = x
        self.y = y


class Slotted:
    __slots__ = ("a", "b", "unset")

    def __init__(self) -> None:
        self.a = 1
        self.b = "two"


class Node:
    def __init__(self, child: Any = None) -> None:
        self.child = child


def shown(
    value: Any, rules: RedactionRules = DEFAULT_RULES, limits: CaptureLimits | None = None, reveal: tuple[str, ...] = ()
) -> Any:
    """What the events file would hold for this value: captured, finished, JSON round-tripped."""
    capturer = Capturer(NameFilter(rules, reveal), limits or CaptureLimits())
    finished = finish_value(capturer.value(value), reveal)
    return json.loads(encode({"v": finished}))["v"]


def test_representations() -> None:
    assert shown(None) is None and shown(True) is True and shown(3) == 3 and shown(2.5) == 2.5
    assert shown("text") == "text"
    assert shown([1, "a"]) == [1, "a"]
    assert shown((1, 2)) == {"@type": "tuple", "@items": [1, 2]}
    assert shown({"k": 1}) == {"k": 1}
    assert shown({1: "a"}) == {"@type": "dict", "@entries": [[1, "a"]]}
    assert shown({"@odd": 1}) == {"@@odd": 1}
    assert shown(b"ab\xff") == {"@type": "bytes", "@value": "ab\\xff", "@size": 3}
    assert shown(float("nan")) == {"@type": "float", "@value": "nan"}
    assert shown(10**30) == {"@type": "int", "@bits": 100}
    assert shown(Point(1, 2)) == {"@type": "tests.agent.reading.test_capture.Point", "x": 1, "y": 2}
    assert shown(Slotted()) == {"@type": "tests.agent.reading.test_capture.Slotted", "a": 1, "b": "two"}
    assert shown(Status.PAID) == {"@type": "tests.agent.reading.test_capture.Status", "@value": "PAID"}
    assert shown(decimal.Decimal("1.50")) == {"@type": "decimal.Decimal", "@value": "1.50"}
    assert shown(datetime.date(2026, 11, 21)) == {"@type": "datetime.date", "@value": "2026-11-21"}
    assert shown(datetime.timedelta(minutes=2)) == {"@type": "datetime.timedelta", "@value": 120.0}
    value = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert shown(value) == {"@type": "uuid.UUID", "@value": str(value)}
    assert shown(ValueError("bad", 3)) == {"@type": "ValueError", "args": {"@type": "tuple", "@items": ["bad", 3]}}
    assert shown(len) == {"@type": "function", "@name": "len"}
    assert shown(Point) == {"@type": "class", "@name": "tests.agent.reading.test_capture.Point"}
    assert shown(json) == {"@type": "module", "@name": "json"}


def test_limits_on_depth_items_fields_strings_and_size() -> None:
    limits = CaptureLimits(depth=2, items=3, string=10, fields=2, snapshot_bytes=32 * 1024)
    assert shown(Node(Node(Node())), limits=limits) == {
        "@type": "tests.agent.reading.test_capture.Node",
        "child": {
            "@type": "tests.agent.reading.test_capture.Node",
            "child": {"@type": "tests.agent.reading.test_capture.Node", "@truncated": "depth"},
        },
    }
    assert shown(list(range(10)), limits=limits) == [0, 1, 2, {"@more": 7}]
    assert shown({"a": 1, "b": 2, "c": 3, "d": 4}, limits=limits) == {"a": 1, "b": 2, "c": 3, "@more": 1}
    obj = Point(1, 2)
    obj.z = 3  # type: ignore[attr-defined]
    assert shown(obj, limits=limits) == {"@type": "tests.agent.reading.test_capture.Point", "x": 1, "y": 2, "@more": 1}
    assert shown("x" * 50, limits=limits) == {"@type": "str", "@value": "x" * 10, "@size": 50}
    tiny = CaptureLimits(snapshot_bytes=200)
    big = shown([["y" * 50] * 3] * 20, limits=tiny)
    assert len(json.dumps(big)) < 600 and big[-1] == {"@more": 18}
    assert shown([Point(1, 2)] * 20, limits=tiny)[-1] in ({"@more": 17}, {"@more": 18}, {"@more": 19})


def test_cycles_are_marked() -> None:
    node = Node()
    node.child = node
    assert shown(node)["child"] == {"@type": "tests.agent.reading.test_capture.Node", "@cycle": True}
    items: list[Any] = [1]
    items.append(items)
    assert shown(items) == [1, {"@type": "list", "@cycle": True}]


def test_redaction_by_name_value_and_type() -> None:
    rules = RedactionRules.build(types=["tests.agent.reading.test_capture.Point"])
    value = {
        "password": "x",
        "note": "mail alice@example.com",
        "api_key": "k",
        "p": Point(1, 2),
        "card": "4111 1111 1111 1111",
    }
    out = shown(value, rules=rules)
    assert out["password"] == {"@redacted": "secret"} and out["api_key"] == {"@redacted": "secret"}
    assert out["note"] == "mail [redacted:pii]"
    assert out["card"] == {"@redacted": "card"}
    assert out["p"] == {"@redacted": "type", "@type": "tests.agent.reading.test_capture.Point"}
    assert "alice" not in json.dumps(out) and "4111" not in json.dumps(out)
    revealed = shown(value, rules=rules, reveal=("pii", "type"))
    assert revealed["note"] == "mail alice@example.com" and revealed["p"]["x"] == 1
    assert revealed["password"] == {"@redacted": "secret"}


def test_a_secret_crossing_the_string_limit_is_still_redacted() -> None:
    text = "x" * 245 + " 4111 1111 1111 1111 and more"
    out = shown(text)
    assert out["@size"] == len(text)
    assert "4111" not in out["@value"] and "[redacted:card]" in out["@value"]
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    out = shown("y" * 240 + jwt)
    assert "eyJ" not in out["@value"]


def test_dict_keys_that_are_secrets_are_redacted_too() -> None:
    out = shown({"alice@example.com": 1, "bob": 2})
    assert list(out) == ["[redacted:pii]#0", "bob"]
