"""`keyhole demo` end to end, as a user runs it: a real gateway, a real service with an agent, the CLI
as subprocesses. It must show a redacted snapshot and log lines, never a secret, and leave nothing
behind: no process, no temporary directory. Ctrl-C must clean up as well."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

KEYHOLE = str(Path(sys.executable).parent / "keyhole")
# What the example service holds and must never show: its customers' e-mail addresses and card number.
SECRETS = ("@example.com", "4111 1111 1111 1111", "4111111111111111")
_ROOT = re.compile(r"^keyhole demo: working in (\S+) ")

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds its processes through /proc")


def _env() -> dict[str, str]:
    # Unbuffered, so that the interrupt test sees each line as the demo prints it.
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def _root(first_line: str) -> Path:
    match = _ROOT.match(first_line)
    assert match, f"the first line names the temporary directory: {first_line!r}"
    return Path(match.group(1))


def _processes_of(root: Path) -> list[str]:
    """Processes the demo started: each has KEYHOLE_CONFIG_DIR inside its temporary directory."""
    marker = f"KEYHOLE_CONFIG_DIR={root}/config".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{entry.name}: {command}")
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _assert_nothing_left(root: Path) -> None:
    deadline = time.monotonic() + 5
    while _processes_of(root) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _processes_of(root)
    assert not left, f"processes left running: {left}"
    assert not root.exists(), f"{root} was not removed"


def test_the_demo_shows_redacted_snapshots_and_log_lines_and_leaves_nothing_behind() -> None:
    started = time.monotonic()
    command = [KEYHOLE, "demo"]
    result = subprocess.run(command, capture_output=True, text=True, env=_env(), timeout=120, check=False)
    elapsed = time.monotonic() - started
    out = result.stdout
    assert result.returncode == 0, f"stdout:\n{out}\nstderr:\n{result.stderr}"
    assert result.stderr == ""
    root = _root(out.splitlines()[0])
    _assert_nothing_left(root)

    # Each step has its heading, and the last says it is done.
    for number in range(1, 7):
        assert f"\n== {number}/6 " in out
    assert "keyhole demo: done in" in out and f"removed {root}" in out

    # A snapshot: its frame in the service, the locals redacted by name and by value, the watches.
    assert re.search(r" snapshot \(.*\)\n", out)
    assert re.search(r"checkout \S+/shop/gateway_service\.py:\d+\n", out)
    assert "card_number = [redacted: secret]" in out
    assert "email = [redacted: pii]" in out
    assert "order.customer.email = [redacted: pii]" in out
    assert "len(order.items) = 3" in out

    # Log lines, one per request, with the e-mail address redacted inside the message.
    logs = re.findall(r" log \(.*\): order (\d) for \[redacted:pii\]: \d item\(s\), total [\d.]+, ch_\w+\n", out)
    assert sorted(logs) == ["1", "2", "3", "4", "5", "6"]

    # The session is closed, the service and the gateway stopped cleanly.
    assert re.search(r"session \S+ is closed", out)
    assert "the service has stopped (exit 0)" in out
    assert "the gateway has stopped (exit 0)" in out

    for secret in SECRETS:
        assert secret not in out and secret not in result.stderr
    assert elapsed < 30, f"the demo took {elapsed:.1f} s"


def test_ctrl_c_stops_everything_the_demo_started() -> None:
    demo = subprocess.Popen(
        [KEYHOLE, "demo"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert demo.stdout is not None
        root = _root(demo.stdout.readline())
        # Wait until the gateway and the service both run (step 4 starts once the agent is connected).
        for line in demo.stdout:
            if line.startswith("== 4/6"):
                break
        else:
            pytest.fail(f"the demo ended early: {demo.wait()}, {demo.stderr.read() if demo.stderr else ''}")
        assert len(_processes_of(root)) >= 2, "the gateway and the service run"
        demo.send_signal(signal.SIGINT)
        _, err = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 130, err
    assert re.fullmatch(r"keyhole: demo interrupted at step \d .*; everything it started is stopped\n", err), err
    assert "Traceback" not in err
    _assert_nothing_left(root)
