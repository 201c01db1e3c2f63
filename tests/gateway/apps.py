"""Services with an agent, for end-to-end tests: real child processes, their progress read from the
JSON lines they print."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.gateway.harness import KEYHOLE, RunningGateway, keyhole

SERVICE = Path(__file__).parent / "service" / "orders.py"


def probe_line() -> int:
    for number, text in enumerate(SERVICE.read_text().splitlines(), start=1):
        if "# PROBE-LINE" in text:
            return number
    raise AssertionError("no PROBE-LINE marker")


def blank_line() -> int:
    """A line of the service with no code on it."""
    for number, text in enumerate(SERVICE.read_text().splitlines(), start=1):
        if not text.strip() and number > 10:
            return number
    raise AssertionError("no blank line")


@dataclass
class Service:
    process: subprocess.Popen[str]
    lines: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def latest(self, pid: int | None = None) -> dict[str, Any]:
        mine = [line for line in self.lines if pid is None or line["pid"] == pid]
        return mine[-1] if mine else {}

    def wait_for(self, check: Callable[[dict[str, Any]], bool], timeout: float = 20.0, pid: int | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the service exited: {''.join(self.errors)}")
            latest = self.latest(pid)
            if latest and check(latest):
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out; last line {self.latest(pid)}; stderr: {''.join(self.errors)[-2000:]}")

    def instance(self, config: Path) -> str:
        return str(wait_connected(config, self.process.pid)["instance"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def stop_with_workers(self) -> None:
        """Stop the service and the workers it forked (each printed lines under its own pid)."""
        self.stop()
        for pid in {line["pid"] for line in self.lines} - {self.process.pid}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


def _read(service: Service) -> None:
    assert service.process.stdout is not None and service.process.stderr is not None
    stderr = service.process.stderr

    def errors() -> None:
        for line in stderr:
            service.errors.append(line)

    threading.Thread(target=errors, daemon=True).start()
    for line in service.process.stdout:
        try:
            service.lines.append(json.loads(line))
        except ValueError:
            service.errors.append(line)


def start_service(
    gateway: RunningGateway, config: Path, *, token: str, mode: str = "run", env: dict[str, str] | None = None
) -> Service:
    """`run`: under `keyhole run --gateway`; `start` or `fork`: keyhole.start() from the environment."""
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KEYHOLE_")},
        "KEYHOLE_ENROLL_TOKEN": token,
        "KEYHOLE_CONFIG_DIR": str(config),
        **(env or {}),
    }
    if mode == "run":
        args = [KEYHOLE, "run", "--gateway", gateway.url, "--service", "orders", "--ca", str(gateway.ca)]
        args += ["--", sys.executable, str(SERVICE)]
    else:
        full_env.update(KEYHOLE_GATEWAY=gateway.url, KEYHOLE_SERVICE="orders", KEYHOLE_CA=str(gateway.ca))
        args = [sys.executable, str(SERVICE), mode]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env)
    service = Service(process)
    threading.Thread(target=_read, args=(service,), daemon=True).start()
    return service


def enroll_token(config: Path, *labels: str) -> str:
    args = ["agent", "enroll-token", "--service", "orders"]
    for label in labels:
        args += ["--label", label]
    result = keyhole(*args, config=config)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def agents(config: Path) -> list[dict[str, Any]]:
    result = keyhole("agents", "--json", config=config)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def wait_connected(config: Path, pid: int, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for agent in agents(config):
            if agent["pid"] == pid and agent["connected"]:
                return agent
        time.sleep(0.1)
    raise AssertionError(f"no connected agent with pid {pid}: {agents(config)}")
