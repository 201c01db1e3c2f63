"""The policy file: the issue's own example reads as written; every mistake is refused whole, with
its line and its reason."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyhole.gateway.access.policy import DEFAULT_MAX_SESSION, PolicyError, parse_policy

EXAMPLE = """\
roles:
  oncall:
    services: ["orders", "payments-*"]
    probes: [snapshot, log, metric, stacks]
    max_session: 30m
    approval: {from: [sre-lead], count: 1}
  sre-lead:
    services: ["*"]
    probes: [snapshot, log, metric, function, exception, stacks]
    max_session: 60m
    reveal: [pii]
users:
  alice: [oncall]
  bob: [sre-lead]
"""


def test_the_example_policy_reads_as_written() -> None:
    policy = parse_policy(EXAMPLE)
    oncall, lead = policy.roles["oncall"], policy.roles["sre-lead"]
    assert oncall.max_session == 1800 and lead.max_session == 3600
    assert oncall.approval is not None and oncall.approval.roles == {"sre-lead"} and oncall.approval.count == 1
    assert oncall.probes == {"snapshot", "log", "metric", "stacks"} and lead.reveal == {"pii"}
    assert oncall.covers("payments-eu") and oncall.covers("orders") and not oncall.covers("billing")
    assert lead.covers("billing") and oncall.reveal == frozenset()
    assert [r.name for r in policy.roles_of("alice")] == ["oncall"] and policy.roles_of("mallory") == []


def test_groups_admin_and_defaults() -> None:
    policy = parse_policy(
        """\
roles:
  eu-reader:
    services: [orders]
  auditor:
    services: []
    admin: [audit]
groups:
  sre: {roles: [eu-reader, auditor], members: [carol, dan]}
users:
  carol: [eu-reader]
"""
    )
    reader = policy.roles["eu-reader"]
    assert reader.probes == frozenset() and reader.max_session == DEFAULT_MAX_SESSION and reader.approval is None
    assert reader.covers("orders") and not reader.covers("orders-eu")
    assert [r.name for r in policy.roles_of("dan")] == ["auditor", "eu-reader"]
    assert policy.roles["auditor"].admin == {"audit"} and not policy.roles["auditor"].covers("orders")


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("roles:\n  a:\n    servics: [x]\n", 3, "unknown field 'servics' in role a"),
        ("roles:\n  a:\n    probes: [snapshot]\n", 2, "role a needs services"),
        ("roles:\n  a:\n    services: [x]\n    probes: [snapshots]\n", 4, "unknown probe kind 'snapshots'"),
        ("roles:\n  a:\n    services: [x]\n    max_session: 2d\n", 4, "max_session"),
        ("roles:\n  a:\n    services: [x]\n    max_session: 48h\n", 4, "at most 24h"),
        ("roles:\n  a:\n    services: [x]\n    reveal: [everything]\n", 4, "unknown redaction class 'everything'"),
        ("roles:\n  a:\n    services: [x]\n    approval: {from: [b]}\n", 4, "no role 'b' is defined"),
        ("roles:\n  a:\n    services: [x]\n    approval: {from: [a], count: 0}\n", 4, "from 1 to 10"),
        ("roles:\n  a:\n    services: [x]\n    admin: [root]\n", 4, "unknown ability 'root'"),
        ("roles:\n  a:\n    services: x\n", 3, "must be a list of names"),
        ("roles:\n  a: {services: [x]}\nusers:\n  alice: [b]\n", 4, "user alice's roles: no role 'b'"),
        ("roles:\n  a: {services: [x]}\n  a: {services: [y]}\n", 3, "'a' appears twice"),
        ("roles:\n  A: {services: [x]}\n", 2, "role 'A' must be lower case"),
        ("rolez:\n  a: {services: [x]}\n", 1, "unknown section 'rolez'"),
        ("roles: [\n", 2, "expected"),
        ("groups:\n  g: {roles: [a], member: [x]}\n", 2, "unknown field 'member' in group g"),
        ("roles:\n  a:\n    services: [x]\n    labels: {region: eu}\n", 4, "not enforced yet"),
    ],
)
def test_a_mistake_names_its_line_and_reason(text: str, line: int, reason: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text)
    message = str(caught.value)
    assert message.startswith(f"line {line}: ") and reason in message and "\n" not in message


def test_an_empty_policy_says_what_it_needs() -> None:
    with pytest.raises(PolicyError, match="needs at least roles"):
        parse_policy("")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_a_policy_or_one_clear_line(text: str) -> None:
    try:
        parse_policy(text)
    except PolicyError as exc:
        assert str(exc) and "\n" not in str(exc)
