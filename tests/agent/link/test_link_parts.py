"""The small parts of the agent link, each on its own: the bounded upload buffer, the reconnect backoff and the link
configuration."""

from __future__ import annotations

import datetime
import math
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from keyhole.agent.link.config import (
    DEADMAN_GRACE,
    ENV_CA,
    ENV_GATEWAY,
    ENV_LABELS,
    ENV_SERVICE,
    ENV_TOKEN,
    LinkConfig,
    LinkConfigError,
    build_config,
)
from keyhole.agent.link.gateway_link import BACKOFF_CAP, BACKOFF_START, Backoff
from keyhole.agent.link.upload_buffer import UploadBuffer


def events(*numbers: int) -> list[dict[str, Any]]:
    return [{"n": n} for n in numbers]


def numbers(batch: list[dict[str, Any]]) -> list[int]:
    return [event["n"] for event in batch]


# --- UploadBuffer --------------------------------------------------------------------------------------------------


def test_events_come_out_in_the_order_they_went_in() -> None:
    buffer = UploadBuffer(limit=10)
    buffer.put(events(1, 2, 3))
    buffer.put(events(4))
    assert len(buffer) == 4
    assert numbers(buffer.take(10, timeout=0)) == [1, 2, 3, 4]
    assert len(buffer) == 0


def test_take_returns_at_most_its_limit() -> None:
    buffer = UploadBuffer(limit=10)
    buffer.put(events(1, 2, 3, 4, 5))
    assert numbers(buffer.take(2, timeout=0)) == [1, 2]
    assert numbers(buffer.take(2, timeout=0)) == [3, 4]
    assert numbers(buffer.take(2, timeout=0)) == [5]
    assert buffer.take(0, timeout=0) == []


def test_a_full_buffer_drops_the_newest_events_and_counts_them() -> None:
    # Bounded: a gateway that is away costs at most `limit` events of memory.
    buffer = UploadBuffer(limit=3)
    buffer.put(events(1, 2))
    buffer.put(events(3, 4, 5))
    assert len(buffer) == 3
    assert buffer.dropped == 2
    buffer.put(events(6))
    assert buffer.dropped == 3
    assert numbers(buffer.take(10, timeout=0)) == [1, 2, 3]


def test_take_dropped_reports_each_drop_once() -> None:
    buffer = UploadBuffer(limit=1)
    buffer.put(events(1, 2, 3))
    assert buffer.take_dropped() == 2
    assert buffer.take_dropped() == 0
    assert buffer.dropped == 0


def test_putting_nothing_changes_nothing() -> None:
    buffer = UploadBuffer(limit=1)
    buffer.put(events(1))
    buffer.put([])
    assert (len(buffer), buffer.dropped) == (1, 0)


def test_put_back_goes_in_front_in_its_own_order() -> None:
    # A batch that failed to upload is retried first, so the gateway still sees events in order.
    buffer = UploadBuffer(limit=10)
    buffer.put(events(1, 2, 3, 4, 5))
    batch = buffer.take(3, timeout=0)
    buffer.put(events(6))
    buffer.put_back(batch)
    assert buffer.dropped == 0
    assert numbers(buffer.take(10, timeout=0)) == [1, 2, 3, 4, 5, 6]


def test_put_back_keeps_what_fits_and_counts_the_rest() -> None:
    buffer = UploadBuffer(limit=5)
    buffer.put(events(1, 2, 3))
    batch = buffer.take(3, timeout=0)
    buffer.put(events(4, 5, 6))  # newer events arrived while the batch was on the wire
    buffer.put_back(batch)  # room for 2 of the 3
    assert buffer.dropped == 1
    assert len(buffer) == 5
    assert numbers(buffer.take(10, timeout=0)) == [1, 2, 4, 5, 6]


def test_put_back_into_a_full_buffer_drops_the_whole_batch() -> None:
    buffer = UploadBuffer(limit=2)
    buffer.put(events(1, 2))
    buffer.put_back(events(0))
    assert buffer.dropped == 1
    assert numbers(buffer.take(10, timeout=0)) == [1, 2]


def test_take_on_an_empty_buffer_waits_for_its_timeout() -> None:
    buffer = UploadBuffer()
    start = time.monotonic()
    assert buffer.take(10, timeout=0.1) == []
    assert time.monotonic() - start >= 0.09


def test_take_returns_as_soon_as_another_thread_puts() -> None:
    # The uploader thread must not sleep out its whole timeout once there is something to send.
    buffer = UploadBuffer()
    timer = threading.Timer(0.05, buffer.put, args=(events(7),))
    start = time.monotonic()
    timer.start()
    try:
        assert numbers(buffer.take(10, timeout=5.0)) == [7]
    finally:
        timer.join()
    assert time.monotonic() - start < 2.0


def test_take_returns_at_once_when_events_are_already_there() -> None:
    buffer = UploadBuffer()
    buffer.put(events(1))
    start = time.monotonic()
    assert numbers(buffer.take(10, timeout=5.0)) == [1]
    assert time.monotonic() - start < 1.0


def test_wake_ends_a_waiting_take_early() -> None:
    # Used when the link stops: the uploader thread must not hang on to an idle wait.
    buffer = UploadBuffer()
    timer = threading.Timer(0.05, buffer.wake)
    start = time.monotonic()
    timer.start()
    try:
        assert buffer.take(10, timeout=5.0) == []
    finally:
        timer.join()
    assert time.monotonic() - start < 2.0


def test_reset_after_fork_empties_the_buffer_and_forgets_drops() -> None:
    buffer = UploadBuffer(limit=2)
    buffer.put(events(1, 2, 3))
    buffer.reset_after_fork()
    assert (len(buffer), buffer.dropped, buffer.limit) == (0, 0, 2)
    buffer.put(events(4))
    assert numbers(buffer.take(10, timeout=0)) == [4]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_reset_after_fork_gives_the_child_a_usable_buffer_even_if_the_lock_was_held() -> None:
    # The real case: another thread holds the buffer's lock at the moment of fork; that thread does not exist in the
    # child, so the child's copy of the lock is held forever unless reset_after_fork replaces it. The private `_ready`
    # is used only to hold the lock from outside, which no public method does for long enough to fork in between.
    buffer = UploadBuffer()
    buffer.put(events(1, 2))
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with buffer._ready:
            holding.set()
            release.wait(5.0)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(5.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() in a multi-threaded process
            pid = os.fork()
        if pid == 0:  # the child: report through the exit code only, never return into pytest
            code = 1
            try:
                buffer.reset_after_fork()
                buffer.put(events(3))
                code = 0 if numbers(buffer.take(10, timeout=0.5)) == [3] and len(buffer) == 0 else 2
            finally:
                os._exit(code)
    finally:
        release.set()
        holder.join()
    deadline = time.monotonic() + 5.0
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the child hung on the buffer after reset_after_fork")
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0
    assert numbers(buffer.take(10, timeout=0)) == [1, 2]  # the parent keeps its own events


# --- Backoff -------------------------------------------------------------------------------------------------------


def test_backoff_delays_grow_then_stay_between_half_the_cap_and_the_cap() -> None:
    backoff = Backoff()
    for attempt in range(40):
        ceiling = min(BACKOFF_CAP, BACKOFF_START * 2**attempt)
        delay = backoff.next()
        assert ceiling / 2 <= delay <= ceiling, (attempt, delay)
        if attempt >= 10:  # 0.5 * 2**6 already passes the cap
            assert BACKOFF_CAP / 2 <= delay <= BACKOFF_CAP


def test_every_backoff_delay_is_at_least_the_one_before_until_the_cap() -> None:
    # Below the cap, attempt k draws from [c/2, c] and attempt k+1 from [c, 2c]: no retry comes sooner than the last.
    uncapped = int(math.log2(BACKOFF_CAP / BACKOFF_START))  # attempts whose next ceiling is still under the cap
    for _ in range(30):
        backoff = Backoff()
        delays = [backoff.next() for _ in range(uncapped + 1)]
        assert delays == sorted(delays)
        assert delays[-1] > delays[0] * 2


def test_backoff_reset_starts_again_from_the_shortest_delay() -> None:
    backoff = Backoff()
    for _ in range(20):
        backoff.next()
    backoff.reset()
    assert BACKOFF_START / 2 <= backoff.next() <= BACKOFF_START


def test_backoff_is_jittered() -> None:
    # Agents that lost the gateway together must not all return at the same moment.
    first = [Backoff().next() for _ in range(50)]
    assert len(set(first)) > 1
    capped = Backoff()
    for _ in range(20):
        capped.next()
    later = [capped.next() for _ in range(50)]
    assert len(set(later)) > 1


# --- build_config --------------------------------------------------------------------------------------------------


def make_ca_pem() -> str:
    key = Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyhole test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, None)
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


CA_PEM = make_ca_pem()
GOOD: dict[str, Any] = {
    "gateway": "https://gateway.example:8443",
    "service": "shop",
    "token": "khe_abcdef",
    "ca": CA_PEM,
}


def config(environ: dict[str, str] | None = None, **overrides: Any) -> LinkConfig:
    # An explicit environ keeps the test runner's own KEYHOLE_* variables out of every test.
    return build_config(**{**GOOD, **overrides}, environ={} if environ is None else environ)


def config_error(environ: dict[str, str] | None = None, **overrides: Any) -> str:
    with pytest.raises(LinkConfigError) as info:
        config(environ, **overrides)
    return str(info.value)


def test_a_complete_configuration_is_built() -> None:
    built = config()
    assert (built.host, built.port, built.service, built.token) == ("gateway.example", 8443, "shop", "khe_abcdef")
    assert built.ca_pem == CA_PEM
    assert built.labels == {}
    assert built.deadman_grace == DEADMAN_GRACE


def test_the_port_defaults_to_443() -> None:
    assert config(gateway="https://gateway.example").port == 443


def test_the_token_is_stripped() -> None:
    assert config(token="  khe_abcdef\n").token == "khe_abcdef"


def test_every_setting_is_read_from_the_environ_mapping() -> None:
    environ = {
        ENV_GATEWAY: "https://gw.internal:9443",
        ENV_SERVICE: "billing",
        ENV_TOKEN: "khe_fromenv",
        ENV_CA: CA_PEM,
        ENV_LABELS: "team=payments, region = eu-west-1,,",
    }
    built = build_config(environ=environ)
    assert (built.host, built.port, built.service, built.token) == ("gw.internal", 9443, "billing", "khe_fromenv")
    assert built.ca_pem == CA_PEM
    assert built.labels == {"team": "payments", "region": "eu-west-1"}


def test_arguments_win_over_the_environ_mapping() -> None:
    environ = {ENV_GATEWAY: "https://other:1", ENV_SERVICE: "other", ENV_TOKEN: "khe_other", ENV_LABELS: "a=b"}
    built = config(environ, labels={"team": "core"})
    assert (built.host, built.service, built.token, built.labels) == (
        "gateway.example",
        "shop",
        "khe_abcdef",
        {"team": "core"},
    )


def test_without_an_environ_mapping_the_process_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_GATEWAY, "https://from-process:8443")
    monkeypatch.setenv(ENV_SERVICE, "proc")
    monkeypatch.setenv(ENV_TOKEN, "khe_proc")
    monkeypatch.setenv(ENV_CA, CA_PEM)
    monkeypatch.setenv(ENV_LABELS, "k=v")
    built = build_config()
    assert (built.host, built.service, built.token, built.labels) == ("from-process", "proc", "khe_proc", {"k": "v"})


def test_a_label_value_may_contain_an_equals_sign() -> None:
    assert config({ENV_LABELS: "query=a=b"}).labels == {"query": "a=b"}


def test_a_ca_file_path_is_read(tmp_path: Path) -> None:
    path = tmp_path / "ca.pem"
    path.write_text("# the gateway's CA\n" + CA_PEM, encoding="ascii")
    assert config(ca=str(path)).ca_pem == path.read_text(encoding="ascii")


def test_a_ca_given_as_pem_text_with_leading_whitespace_is_used_as_is() -> None:
    assert config(ca="\n  " + CA_PEM).ca_pem == "\n  " + CA_PEM


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        pytest.param({"gateway": None}, ENV_GATEWAY, id="no gateway"),
        pytest.param({"gateway": ""}, ENV_GATEWAY, id="empty gateway"),
        pytest.param({"gateway": "http://gateway.example:8443"}, "https://", id="http URL"),
        pytest.param({"gateway": "gateway.example:8443"}, "https://", id="no scheme"),
        pytest.param({"gateway": "https://:8443"}, "https://", id="no host"),
        pytest.param({"gateway": "https://gateway.example:99999"}, "port", id="port out of range"),
        pytest.param({"gateway": "https://gateway.example:https"}, "port", id="port not a number"),
        pytest.param({"service": None}, ENV_SERVICE, id="no service"),
        pytest.param({"service": "shop orders"}, "service name", id="service with a space"),
        pytest.param({"service": "-shop"}, "service name", id="service starting with a dash"),
        pytest.param({"service": "s" * 65}, "service name", id="service too long"),
        pytest.param({"token": None}, ENV_TOKEN, id="no token"),
        pytest.param({"ca": None}, ENV_CA, id="no CA"),
        pytest.param({"deadman_grace": 2.9}, "deadman_grace", id="grace too short"),
        pytest.param({"deadman_grace": 3600.5}, "deadman_grace", id="grace too long"),
        pytest.param({"deadman_grace": math.nan}, "deadman_grace", id="grace NaN"),
        pytest.param({"labels": {"bad key": "x"}}, "label", id="bad label name"),
        pytest.param({"labels": {"team": "a\nb"}}, "label", id="label value with a newline"),
    ],
)
def test_each_missing_or_malformed_setting_is_named(overrides: dict[str, Any], names: str) -> None:
    assert names in config_error(**overrides)


@pytest.mark.parametrize("labels", ["team", "team=core,region", "=x,"])
def test_malformed_keyhole_labels_are_refused(labels: str) -> None:
    message = config_error({ENV_LABELS: labels})
    assert ENV_LABELS in message or "label" in message


def test_keyhole_labels_without_an_equals_sign_name_the_variable() -> None:
    assert ENV_LABELS in config_error({ENV_LABELS: "team=core,region"})


def test_a_missing_ca_file_is_refused(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.pem")
    message = config_error(ca=missing)
    assert "CA certificate" in message
    assert missing in message


def test_a_ca_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    assert "cannot read the gateway CA" in config_error(ca=str(tmp_path))


def test_a_ca_file_that_is_not_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ca.der"
    path.write_bytes(b"\x30\x82\xff\xfe" * 10)
    assert "cannot read the gateway CA" in config_error(ca=str(path))


def test_a_ca_file_that_is_not_pem_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ca.pem"
    path.write_text("this is not a certificate\n", encoding="ascii")
    message = config_error(ca=str(path))
    assert "not a PEM certificate" in message
    assert str(path) in message


def test_a_private_key_pem_is_not_taken_for_a_ca(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    assert "not a PEM certificate" in config_error(ca=str(path))


@pytest.mark.parametrize(
    ("grace", "wait"),
    [(3.0, 1.0), (4.5, 1.5), (30.0, 10.0), (60.0, 20.0), (61.0, 20.0), (600.0, 20.0), (3600.0, 20.0)],
)
def test_poll_wait_is_a_third_of_the_grace_between_1_and_20_seconds(grace: float, wait: float) -> None:
    assert config(deadman_grace=grace).poll_wait == pytest.approx(wait)


@given(st.floats(min_value=3.0, max_value=3600.0))
def test_poll_wait_always_refreshes_the_deadman_clock_in_time(grace: float) -> None:
    # At least three answers per grace period (a lost answer or two does not trip the dead-man switch), never more
    # than 20 s (proxies keep the connection), never a busy loop under 1 s.
    wait = config(deadman_grace=grace).poll_wait
    assert 1.0 <= wait <= 20.0
    assert wait <= grace / 3 or wait == 1.0


def test_a_token_of_only_whitespace_is_refused() -> None:
    assert ENV_TOKEN in config_error(token="   ")


def test_port_zero_is_refused() -> None:
    assert "port" in config_error(gateway="https://gateway.example:0")
