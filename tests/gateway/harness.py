"""A real gateway for tests: `keyhole gateway init` and `keyhole gateway serve` as subprocesses on
loopback (free ports), and the `keyhole` CLI run as a subprocess against it."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

KEYHOLE = str(Path(sys.executable).parent / "keyhole")
ADMIN_PASSWORD = "admin-password-for-tests"
_ADDRESS = re.compile(r"keyhole gateway: (user API|agents) on https://([0-9.]+):(\d+)")


def keyhole(
    *args: str, config: Path, stdin: str | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "KEYHOLE_CONFIG_DIR": str(config), **(env or {})}
    return subprocess.run(
        [KEYHOLE, *args], input=stdin, capture_output=True, text=True, env=full_env, timeout=timeout, check=False
    )


def cli_login(
    url: str, ca: Path, config: Path, user: str = "admin", password: str = ADMIN_PASSWORD
) -> subprocess.CompletedProcess[str]:
    """`keyhole login` with the password on stdin, as a script would do it."""
    args = ["login", "--gateway", url, "--ca", str(ca), "--user", user, "--password-stdin"]
    return keyhole(*args, config=config, stdin=password + "\n")


def init_state(data: Path, config: Path, password: str = ADMIN_PASSWORD) -> subprocess.CompletedProcess[str]:
    return keyhole("gateway", "init", "--data", str(data), config=config, env={"KEYHOLE_ADMIN_PASSWORD": password})


@dataclass
class RunningGateway:
    data: Path
    process: subprocess.Popen[str]
    port: int
    agent_port: int
    output: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca(self) -> Path:
        return self.data / "ca.pem"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=ssl.create_default_context(cafile=str(self.ca)), timeout=10)

    def log(self) -> str:
        return "".join(self.output)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=20)


def start_gateway(
    data: Path,
    port: int = 0,
    agent_port: int = 0,
    cert_ttl: str = "12h",
    policy: Path | None = None,
    extra: tuple[str, ...] = (),
) -> RunningGateway:
    process = subprocess.Popen(
        [
            KEYHOLE,
            "gateway",
            "serve",
            "--data",
            str(data),
            "--listen",
            f"127.0.0.1:{port}",
            "--agent-listen",
            f"127.0.0.1:{agent_port}",
            "--agent-cert-ttl",
            cert_ttl,
            *(["--policy", str(policy)] if policy is not None else []),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    ports: dict[str, int] = {}
    deadline = time.monotonic() + 30
    assert process.stdout is not None
    while len(ports) < 2:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"the gateway exited ({process.wait()}): {''.join(output)}")
        output.append(line)
        if match := _ADDRESS.search(line):
            ports[match.group(1)] = int(match.group(3))
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the gateway did not start: {''.join(output)}")
    stream = process.stdout

    def drain() -> None:
        for line in stream:
            output.append(line)

    threading.Thread(target=drain, daemon=True).start()
    running = RunningGateway(data, process, ports["user API"], ports["agents"], output)
    # Listening is not serving yet: wait until the API answers.
    with running.client() as client:
        while True:
            try:
                client.get("/v1/health")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    return running
