"""check_command: the agent runs a probe command only if the gateway signed exactly these bytes, every bound
field (probe id, service, instance, session, expiry) matches, and the spec passes the agent's own validator.

Envelopes are built the way the gateway builds them (gateway/sessions/probe_commands.py::create_probe and
gateway/api/routes/link.py): payload = ProbeCommand(...).payload(), signed with `cryptography`'s Ed25519, so these tests
also check that the agent's pure-Python verifier agrees with the gateway's signer.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from keyhole.agent.link.signed_probes import AcceptedProbe, CommandRefused, check_command
from keyhole.protocol.link import ENVELOPE_VERSION, ProbeCommand, canonical
from keyhole.protocol.probe_spec import ProbeSpec
from keyhole.protocol.redaction import RedactionRules

GATEWAY_KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()
SIGNING_KEY = GATEWAY_KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
SERVICE = "shop"
INSTANCE = "i-0123456789ab"
SESSION = "ses-0011223344556677"
PROBE_ID = "p0a1b2c3d4e"
# A fixed clock: the tests that pass now= do not depend on how fast they run.
NOW = 1_700_000_000.0
RULES = RedactionRules()


def wire_probe(**fields: Any) -> dict[str, Any]:
    """The probe's wire form as the gateway stores it: validated with default rules, then to_dict()."""
    base: dict[str, Any] = {"id": PROBE_ID, "kind": "snapshot", "file": "shop/orders.py", "line": 42}
    return ProbeSpec.from_dict({**base, **fields}).to_dict()


def make_command(
    probe: dict[str, Any] | None = None,
    *,
    session: str = SESSION,
    service: str = SERVICE,
    expires: float = NOW + 600.0,
    instance: str | None = None,
) -> ProbeCommand:
    return ProbeCommand(
        probe=wire_probe() if probe is None else probe,
        session=session,
        service=service,
        expires=expires,
        instance=instance,
    )


def sign_payload(payload: bytes, probe_id: str = PROBE_ID, key: Ed25519PrivateKey = GATEWAY_KEY) -> dict[str, str]:
    """The envelope an agent receives: the probe id routes_link adds, the payload text and the base64 signature."""
    return {"id": probe_id, "payload": payload.decode(), "sig": base64.b64encode(key.sign(payload)).decode()}


def envelope_for(command: ProbeCommand, **kwargs: Any) -> dict[str, str]:
    return sign_payload(command.payload(), **kwargs)


def check(envelope: Any, *, now: float | None = NOW, rules: RedactionRules = RULES) -> AcceptedProbe | None:
    return check_command(envelope, signing_key=SIGNING_KEY, service=SERVICE, instance=INSTANCE, rules=rules, now=now)


def refused(envelope: Any, *, now: float | None = NOW, rules: RedactionRules = RULES) -> str:
    with pytest.raises(CommandRefused) as info:
        check(envelope, now=now, rules=rules)
    return str(info.value)


# --- the good case -------------------------------------------------------------------------------------------------


def test_a_good_command_is_accepted_with_its_spec_session_and_expiry() -> None:
    accepted = check(envelope_for(make_command(expires=NOW + 600.0)))
    assert accepted is not None
    assert accepted.spec.id == PROBE_ID
    assert (accepted.spec.kind, accepted.spec.file, accepted.spec.line) == ("snapshot", "shop/orders.py", 42)
    assert accepted.session == SESSION
    assert accepted.expires == NOW + 600.0


def test_the_ttl_is_clamped_to_the_time_left_in_the_session() -> None:
    # The spec asks for 15 minutes, the session ends in 2: the probe must not outlive the session on the agent's
    # own clock even if the gateway never tells it to remove the probe.
    accepted = check(envelope_for(make_command(wire_probe(ttl="15m"), expires=NOW + 120.0)))
    assert accepted is not None
    assert accepted.spec.ttl == pytest.approx(120.0)


def test_a_ttl_shorter_than_the_session_is_kept() -> None:
    accepted = check(envelope_for(make_command(wire_probe(ttl="30s"), expires=NOW + 600.0)))
    assert accepted is not None
    assert accepted.spec.ttl == 30.0


def test_the_clamp_uses_the_real_clock_when_now_is_not_given() -> None:
    expires = time.time() + 60.0
    accepted = check(envelope_for(make_command(wire_probe(ttl="1h"), expires=expires)), now=None)
    assert accepted is not None
    assert 50.0 < accepted.spec.ttl <= 60.0


def test_a_command_for_all_instances_and_one_for_this_instance_are_both_accepted() -> None:
    assert check(envelope_for(make_command(instance=None))) is not None
    assert check(envelope_for(make_command(instance=INSTANCE))) is not None


def test_a_command_aimed_at_another_instance_is_ignored_not_refused() -> None:
    # Another instance's probe is not an error to report: the agent just does not install it.
    assert check(envelope_for(make_command(instance="i-ffffffffffff"))) is None


def test_extra_envelope_fields_are_ignored() -> None:
    envelope = {**envelope_for(make_command()), "note": "anything"}
    assert check(envelope) is not None


# --- the signature binds the payload -------------------------------------------------------------------------------


def test_a_command_signed_by_another_key_is_refused() -> None:
    message = refused(envelope_for(make_command(), key=OTHER_KEY))
    assert "signature" in message


def test_another_instances_command_with_a_bad_signature_is_refused_not_ignored() -> None:
    # The signature is checked before anything else is believed, the instance field included.
    with pytest.raises(CommandRefused, match="signature"):
        check(envelope_for(make_command(instance="i-ffffffffffff"), key=OTHER_KEY))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param(b'"line":42', b'"line":43', id="line number"),
        pytest.param(b'"service":"shop"', b'"service":"shop2"', id="service"),
        pytest.param(b'"session":"ses-', b'"session":"sex-', id="session"),
        pytest.param(b'"file":"shop/orders.py"', b'"file":"shop/payments.py"', id="file"),
    ],
)
def test_a_payload_changed_after_signing_is_refused(old: bytes, new: bytes) -> None:
    envelope = envelope_for(make_command())
    assert old.decode() in envelope["payload"]
    tampered = {**envelope, "payload": envelope["payload"].replace(old.decode(), new.decode())}
    assert "signature" in refused(tampered)


def test_a_payload_with_a_later_expiry_after_signing_is_refused() -> None:
    command = make_command(expires=NOW + 60.0)
    envelope = envelope_for(command)
    longer = make_command(expires=NOW + 86_400.0).payload().decode()
    assert "signature" in refused({**envelope, "payload": longer})


def test_a_signature_moved_to_another_envelope_id_is_refused() -> None:
    # A valid signed command replayed under another probe id would let one probe be installed twice.
    envelope = {**envelope_for(make_command()), "id": "pffffffffff"}
    assert "another probe id" in refused(envelope)


def test_a_signed_payload_whose_probe_id_differs_from_the_envelope_is_refused() -> None:
    envelope = envelope_for(make_command(wire_probe(id="p-other")), probe_id=PROBE_ID)
    assert "another probe id" in refused(envelope)


# --- every bound field ---------------------------------------------------------------------------------------------


def test_a_command_for_another_service_is_refused() -> None:
    message = refused(envelope_for(make_command(service="billing")))
    assert "billing" in message
    assert SERVICE in message


def test_a_command_for_another_service_is_refused_even_when_aimed_at_this_instance() -> None:
    with pytest.raises(CommandRefused, match="service"):
        check(envelope_for(make_command(service="billing", instance=INSTANCE)))


@pytest.mark.parametrize("session", ["", "-ses", "ses 1", "x" * 65, "ses/../1"])
def test_a_command_without_a_valid_session_id_is_refused(session: str) -> None:
    assert "session" in refused(envelope_for(make_command(session=session)))


def test_a_command_whose_expiry_is_in_the_past_is_refused() -> None:
    assert "expired" in refused(envelope_for(make_command(expires=time.time() - 1.0)), now=None)


@pytest.mark.parametrize("after", [0.0, 0.001, 3600.0])
def test_a_command_checked_at_or_after_its_expiry_is_refused(after: float) -> None:
    envelope = envelope_for(make_command(expires=NOW + 60.0))
    assert check(envelope, now=NOW + 59.0) is not None
    assert "expired" in refused(envelope, now=NOW + 60.0 + after)


# --- malformed envelopes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("envelope", [None, "text", 42, [], ["id", "payload", "sig"], b"{}"])
def test_an_envelope_that_is_not_an_object_is_refused(envelope: Any) -> None:
    assert "malformed" in refused(envelope)


@pytest.mark.parametrize("field", ["id", "payload", "sig"])
def test_an_envelope_missing_a_field_is_refused(field: str) -> None:
    envelope = envelope_for(make_command())
    del envelope[field]
    assert "malformed" in refused(envelope)


@pytest.mark.parametrize("field", ["id", "payload", "sig"])
@pytest.mark.parametrize("value", [None, 1, b"bytes", ["x"], {"x": 1}])
def test_an_envelope_field_that_is_not_text_is_refused(field: str, value: Any) -> None:
    envelope: dict[str, Any] = {**envelope_for(make_command()), field: value}
    assert "malformed" in refused(envelope)


@pytest.mark.parametrize("sig", ["not base64!", "YWJ", "a", "é" * 88, "AAAA AAAA"])
def test_a_signature_that_is_not_base64_is_refused(sig: str) -> None:
    envelope = {**envelope_for(make_command()), "sig": sig}
    assert "base64" in refused(envelope)


@pytest.mark.parametrize("length", [0, 32, 63, 65, 128])
def test_a_base64_signature_of_the_wrong_length_is_refused(length: int) -> None:
    envelope = {**envelope_for(make_command()), "sig": base64.b64encode(b"\x01" * length).decode()}
    assert "does not verify" in refused(envelope)


# --- signed, but still not acceptable ------------------------------------------------------------------------------


def signed_raw(data: Any) -> dict[str, str]:
    """Sign an arbitrary payload, as a buggy or older gateway could; the agent must still check every field."""
    return sign_payload(canonical(data))


def good_payload_data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(make_command().payload())
    return data


@pytest.mark.parametrize("version", [None, 0, 2, "1", 1.5, [1], {"v": 1}])
def test_a_signed_payload_of_another_version_is_refused(version: Any) -> None:
    data = good_payload_data()
    if version is None:
        del data["v"]
    else:
        data["v"] = version
    assert f"version {ENVELOPE_VERSION}" in refused(signed_raw(data))


def test_a_signed_payload_whose_version_is_true_is_refused() -> None:
    data = good_payload_data()
    data["v"] = True
    refused(signed_raw(data))


def test_a_signed_payload_whose_expiry_is_not_a_number_is_refused() -> None:
    # json.loads reads the non-standard token NaN; the gateway's canonical() would write it too.
    data = good_payload_data()
    data["expires"] = float("nan")
    refused(signed_raw(data))


def test_a_signed_payload_that_is_not_json_is_refused() -> None:
    assert "not JSON" in refused(sign_payload(b"probe p1 please"))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("probe", None),
        ("probe", "p1"),
        ("session", 1),
        ("service", None),
        ("expires", "tomorrow"),
        ("expires", True),
        ("instance", 7),
    ],
)
def test_a_signed_payload_with_a_field_of_the_wrong_type_is_refused(field: str, value: Any) -> None:
    data = good_payload_data()
    if value is None:
        del data[field]
    else:
        data[field] = value
    refused(signed_raw(data))


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        pytest.param({"condition": "__import__('os')"}, "__import__", id="import call"),
        pytest.param({"condition": "password == 'x'"}, "redacts", id="reads password"),
        pytest.param({"watch": ["request.headers.authorization"]}, "redacts", id="watches a secret"),
        pytest.param({"condition": "().__class__.__base__"}, "", id="dunder attribute"),
        pytest.param({"exec": "print(1)"}, "unknown field", id="unknown field"),
        pytest.param({"kind": "shell"}, "unknown kind", id="unknown kind"),
        pytest.param({"line": 0}, "line", id="bad line"),
        pytest.param({"ttl": "48h"}, "ttl", id="ttl above the ceiling"),
    ],
)
def test_an_unsafe_spec_inside_a_correctly_signed_command_is_refused(fields: dict[str, Any], reason: str) -> None:
    # The gateway validates too, but the agent does not trust it to: its own validator has the last word.
    probe = {"id": PROBE_ID, "kind": "snapshot", "file": "shop/orders.py", "line": 42, **fields}
    message = refused(envelope_for(make_command(probe)))
    assert PROBE_ID in message
    assert reason in message


def test_the_agents_own_redaction_rules_refuse_what_the_gateway_accepted() -> None:
    # The gateway signed it after validating with default rules; this agent was told `order_total` is secret.
    envelope = envelope_for(make_command(wire_probe(condition="order_total > 100")))
    assert check(envelope) is not None
    strict = RedactionRules.build(names=["order_total"])
    assert "order_total" in refused(envelope, rules=strict)


def test_an_agent_exemption_lets_a_revealed_default_name_through() -> None:
    # The other direction: a team that exempted `token` and asked to reveal it gets the probe.
    probe = {"id": PROBE_ID, "kind": "snapshot", "file": "shop/orders.py", "line": 42, "watch": ["token"]}
    envelope = envelope_for(make_command(probe))
    refused(envelope)
    assert check(envelope, rules=RedactionRules.build(exempt=["token"])) is not None


# --- tampering, exhaustively ---------------------------------------------------------------------------------------

SIGNED = envelope_for(make_command(wire_probe(condition="order.total > 100", ttl="10m")))
SIGNED_BYTES = SIGNED["payload"].encode()


@settings(max_examples=200, deadline=None)
@given(index=st.integers(0, len(SIGNED_BYTES) - 1), byte=st.integers(0, 0x7F))
def test_any_single_byte_change_to_a_signed_payload_is_refused(index: int, byte: int) -> None:
    # The payload is ASCII (canonical JSON of ASCII fields), so any ASCII replacement byte keeps it valid UTF-8 text
    # as the envelope carries it; a same-byte "change" is no change and is accepted.
    changed = bytearray(SIGNED_BYTES)
    changed[index] = byte
    envelope = {**SIGNED, "payload": changed.decode()}
    if byte == SIGNED_BYTES[index]:
        assert check(envelope) is not None
    else:
        with pytest.raises(CommandRefused):
            check(envelope)


@settings(max_examples=50, deadline=None)
@given(index=st.integers(0, 63), bit=st.integers(0, 7))
def test_any_single_bit_change_to_the_signature_is_refused(index: int, bit: int) -> None:
    signature = bytearray(base64.b64decode(SIGNED["sig"]))
    signature[index] ^= 1 << bit
    with pytest.raises(CommandRefused):
        check({**SIGNED, "sig": base64.b64encode(bytes(signature)).decode()})


def test_a_payload_with_a_lone_surrogate_is_refused() -> None:
    # json.loads turns the escape "\ud800" into a lone surrogate, so a gateway answer can carry one.
    envelope = {**SIGNED, "payload": SIGNED["payload"] + "\ud800"}
    with pytest.raises(CommandRefused):
        check(envelope)
