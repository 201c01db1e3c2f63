"""`keyhole demo`: all of keyhole in one go, on this machine. A gateway with its state in a temporary
directory, the example shop service with an agent inside, a login, a debug session, a snapshot and a
logpoint, a few requests, the redacted results on screen; then the session is closed, everything is
stopped and the directory removed.

Each step runs the real `keyhole` command as a subprocess, as a user would type it, with the demo's
own configuration directory (KEYHOLE_CONFIG_DIR): the user's own login and session are left alone.
Whatever happens (a failing step, Ctrl-C, SIGTERM), every process the demo started is stopped.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from keyhole.cli.errors import CliError

# Every step runs the CLI of this very installation, as a child process.
KEYHOLE = [sys.executable, "-m", "keyhole.cli.main"]
SERVICE = "shop"
SERVICE_FILE = Path("examples") / "shop" / "gateway_service.py"
# The service file marks the lines the probes go on with these comments, so the lines can move.
_MARKER = re.compile(r"#\s*keyhole-demo:\s*(\w+)")
_GATEWAY_LINE = re.compile(r"keyhole gateway: (user API|agents) on (https://\S+)")
_SERVICE_LINE = re.compile(r"shop: listening on (http://\S+)")
ORDERS = range(1, 7)
REQUEST_GAP = 0.2
START_WAIT = 30.0  # for the gateway to listen, the service to listen, the agent to connect
EVENTS_WAIT = 10.0  # for the probes' events to reach the gateway
COMMAND_TIMEOUT = 60.0
# How long a child may take to stop after SIGTERM before it is killed. The gateway lets requests in
# flight finish for up to 10 s.
STOP_WAIT = {"service": 5.0, "gateway": 12.0}

SNAPSHOT_CONDITION = "total > 250"
SNAPSHOT_WATCH = ("len(order.items)", "order.customer.email")
LOG_TEMPLATE = "order {order.id} for {order.customer.email}: {len(items)} item(s), total {total:.2f}, {receipt}"


class _Failed(Exception):
    """A step did not work; the message is the reason, in one line."""


def _service_file() -> Path:
    """The example service of a source checkout (examples/ is not part of an installed wheel)."""
    checkout = Path(__file__).resolve().parents[3]
    for candidate in (checkout / SERVICE_FILE, Path.cwd() / SERVICE_FILE):
        if candidate.is_file():
            return candidate
    raise CliError(
        f"keyhole demo needs the example service {SERVICE_FILE} of a keyhole source checkout; "
        "run it from the checkout's directory",
        exit_code=1,
    )


def _marked_lines(path: Path) -> dict[str, int]:
    lines: dict[str, int] = {}
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if match := _MARKER.search(text):
            lines[match.group(1)] = number
    for needed in ("snapshot", "log"):
        if needed not in lines:
            raise _Failed(f"{path} has no '# keyhole-demo: {needed}' comment to set the {needed} probe on")
    return lines


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _shown(argv: list[str]) -> str:
    """A command as the user would type it: `keyhole ...` and `python ...`, not the full paths."""
    words = ["python" if word == sys.executable else word for word in argv]
    return shlex.join(words)


class _Demo:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.step = "0 (setting up)"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KEYHOLE_")}
        self.env["KEYHOLE_CONFIG_DIR"] = str(root / "config")
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.gateway_url = ""
        self.service_url = ""

    # Output -------------------------------------------------------------------------------------

    def heading(self, number: int, title: str, explanation: str) -> None:
        self.step = f"{number} ({title.lower()})"
        typer.echo(f"\n== {number}/6 {title}")
        typer.echo(explanation)

    @staticmethod
    def indented(text: str) -> None:
        for line in text.rstrip("\n").splitlines():
            typer.echo(f"  {line}")

    # Commands -----------------------------------------------------------------------------------

    def keyhole(
        self,
        *args: str,
        stdin: str | None = None,
        show: bool = True,
        inherit_output: bool = False,
    ) -> str:
        """Run `keyhole ARGS` to the end; its output (shown indented unless show=False), or _Failed."""
        if show:
            typer.echo(f"$ keyhole {shlex.join(args)}")
        sys.stdout.flush()
        try:
            done = subprocess.run(
                [*KEYHOLE, *args],
                input=(stdin or "").encode(),
                stdout=None if inherit_output else subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.env,
                timeout=COMMAND_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise _Failed(f"keyhole {args[0]} did not finish in {COMMAND_TIMEOUT:.0f} s") from None
        output = (done.stdout or b"").decode(errors="replace")
        if done.returncode != 0:
            reason = _last_line(done.stderr.decode(errors="replace")).removeprefix("keyhole: ")
            raise _Failed(f"keyhole {args[0]} exited {done.returncode}: {reason or 'no message'}")
        if show and output:
            self.indented(output)
        return output

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """A long-running child, its output in NAME.log. It gets a session of its own, so Ctrl-C in the
        terminal reaches only the demo, which then stops it in order."""
        log = (self.root / f"{name}.log").open("wb")
        with log:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.processes[name] = process
        return process

    def wait_for_lines(self, name: str, pattern: re.Pattern[str], count: int) -> list[re.Match[str]]:
        """The first COUNT lines of NAME.log that match PATTERN, waiting for them as the child writes."""
        process, log = self.processes[name], self.root / f"{name}.log"
        deadline = time.monotonic() + START_WAIT
        while True:
            text = log.read_text(errors="replace")
            found = [m for m in map(pattern.search, text.splitlines()) if m is not None]
            if len(found) >= count:
                return found[:count]
            if process.poll() is not None:
                raise _Failed(f"the {name} exited ({process.returncode}): {_last_line(text) or 'no output'}")
            if time.monotonic() > deadline:
                raise _Failed(f"the {name} did not start in {START_WAIT:.0f} s: {_last_line(text) or 'no output'}")
            time.sleep(0.05)

    def poll(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            for name, process in self.processes.items():
                if process.poll() is not None:
                    last = _last_line((self.root / f"{name}.log").read_text(errors="replace"))
                    raise _Failed(f"the {name} exited ({process.returncode}) while waiting for {what}: {last}")
            if time.monotonic() > deadline:
                raise _Failed(f"no {what} after {timeout:.0f} s")
            time.sleep(0.2)

    def stop(self, name: str, *, report: bool) -> None:
        process = self.processes.pop(name, None)
        if process is None:
            return
        how = "stopped"
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_WAIT[name])
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                how = f"killed: it did not stop within {STOP_WAIT[name]:.0f} s of SIGTERM"
        if report:
            code = process.returncode
            typer.echo(f"  the {name} has {how} (exit {code if code >= 0 else signal.Signals(-code).name})")

    def stop_all(self, *, report: bool) -> None:
        """The service first (its agent's connection ends), then the gateway. A second Ctrl-C or SIGTERM
        cannot cut this short and leave a process behind."""
        with _signals_ignored():
            for name in ("service", "gateway"):
                self.stop(name, report=report)

    def run(self) -> None:
        data, password = self.gateway()
        ca, token = self.login(data, password)
        service_file = self.service(ca, token)
        self.probes(service_file)
        self.requests()
        self.close()

    # The steps ----------------------------------------------------------------------------------

    def gateway(self) -> tuple[Path, str]:
        self.heading(
            1,
            "A gateway",
            "The gateway is the only door into a service: engineers reach it over HTTPS with short-lived\n"
            "tokens, agents over mutual TLS. Its state (database, CA, keys) goes in the temporary directory.",
        )
        data = self.root / "gateway"
        password = secrets.token_urlsafe(18)
        typer.echo(f"$ KEYHOLE_ADMIN_PASSWORD=(random) keyhole gateway init --data {shlex.quote(str(data))}")
        self.env["KEYHOLE_ADMIN_PASSWORD"] = password
        try:
            self.keyhole("gateway", "init", "--data", str(data), show=False)
        finally:
            del self.env["KEYHOLE_ADMIN_PASSWORD"]
        typer.echo(f"  gateway state created in {data}")
        args = ["gateway", "serve", "--data", str(data), "--listen", "127.0.0.1:0", "--agent-listen", "127.0.0.1:0"]
        typer.echo(f"$ keyhole {shlex.join(args)} &")
        self.start("gateway", [*KEYHOLE, *args], self.env)
        found = {m.group(1): m.group(2) for m in self.wait_for_lines("gateway", _GATEWAY_LINE, 2)}
        self.gateway_url = found["user API"]
        typer.echo(f"  user API on {self.gateway_url}, agents on {found['agents']} (client certificate required)")
        self._wait_serving(data / "ca.pem")
        return data, password

    def _wait_serving(self, ca: Path) -> None:
        context = ssl.create_default_context(cafile=str(ca))

        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"{self.gateway_url}/v1/health", context=context, timeout=2):
                    return True
            except (OSError, urllib.error.URLError):
                return False

        self.poll("answer from the gateway", answers, START_WAIT)

    def login(self, data: Path, password: str) -> tuple[str, str]:
        self.heading(
            2,
            "Log in as admin and mint an enrollment token",
            "The login keeps a 15-minute access token (in the demo's own config directory, not yours). The\n"
            f"enrollment token lets one agent of the service {SERVICE!r} join, once, within 10 minutes.",
        )
        ca = str(data / "ca.pem")
        self.keyhole(
            "login", "--gateway", self.gateway_url, "--ca", ca, "--user", "admin", "--password-stdin", stdin=password
        )
        typer.echo(f"$ keyhole agent enroll-token --service {SERVICE}")
        token = self.keyhole("agent", "enroll-token", "--service", SERVICE, show=False).strip()
        typer.echo(f"  {token[:8]}... (single use; the agent gets it as KEYHOLE_ENROLL_TOKEN)")
        return ca, token

    def service(self, ca: str, token: str) -> Path:
        self.heading(
            3,
            "Start the example service with an agent inside",
            "A small HTTP shop. The agent dials out to the gateway; the service opens no port for keyhole.",
        )
        path = _service_file()
        program = [sys.executable, str(path)]
        args = ["run", "--gateway", self.gateway_url, "--service", SERVICE, "--ca", ca, "--", *program]
        typer.echo(f"$ KEYHOLE_ENROLL_TOKEN={token[:8]}... keyhole {_shown(args)} &")
        self.start("service", [*KEYHOLE, *args], {**self.env, "KEYHOLE_ENROLL_TOKEN": token})
        self.service_url = self.wait_for_lines("service", _SERVICE_LINE, 1)[0].group(1)
        typer.echo(f"  shop: listening on {self.service_url}")

        def connected() -> bool:
            found = [json.loads(line) for line in self.keyhole("agents", "--json", show=False).splitlines()]
            return any(agent["service"] == SERVICE and agent["connected"] for agent in found)

        self.poll("connected agent", connected, START_WAIT)
        self.keyhole("agents")
        return path

    def probes(self, path: Path) -> None:
        self.heading(
            4,
            "Open a debug session; set a snapshot and a logpoint",
            "Probes live in a session: time-boxed, recorded, removed from every agent when it closes. They\n"
            "only read; the service never pauses and nothing it does changes.",
        )
        lines = _marked_lines(path)
        where = f"{path.parent.name}/{path.name}"
        self.keyhole("session", "open", "--service", SERVICE, "--reason", "keyhole demo")
        watches = [arg for expression in SNAPSHOT_WATCH for arg in ("--watch", expression)]
        snapshot = f"{where}:{lines['snapshot']}"
        self.keyhole("snap", snapshot, "--if", SNAPSHOT_CONDITION, *watches, "--max-hits", "1")
        self.keyhole("log", f"{where}:{lines['log']}", LOG_TEMPLATE)

    def requests(self) -> None:
        self.heading(
            5,
            "Send a few requests, and see what the probes saw",
            "The card number and the e-mail addresses are redacted inside the service, before anything leaves\n"
            "it: card_number by its name, e-mail addresses by their value, wherever they appear.",
        )
        for order in ORDERS:
            url = f"{self.service_url}/checkout?order={order}"
            with urllib.request.urlopen(url, timeout=10) as response:
                answer = json.loads(response.read())
            typer.echo(f"  GET {url} -> total {answer['total']:.2f}, receipt {answer['receipt']}")
            time.sleep(REQUEST_GAP)
        kinds: list[str] = []

        def arrived() -> bool:
            kinds[:] = [json.loads(line)["kind"] for line in self.keyhole("events", "--json", show=False).splitlines()]
            return "snapshot" in kinds and kinds.count("log") >= len(ORDERS)

        try:
            self.poll("snapshot and log lines", arrived, EVENTS_WAIT)
        except _Failed:
            if "snapshot" not in kinds or "log" not in kinds:
                raise
        self.keyhole("events", inherit_output=True)

    def close(self) -> None:
        self.heading(
            6,
            "Close the session; stop everything",
            "Closing removes the session's probes from every agent and deletes its events at the gateway.",
        )
        self.keyhole("session", "close")
        self.stop_all(report=True)


@contextmanager
def _signals_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops the demo as Ctrl-C does, through its clean-up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def demo(
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the temporary directory: the gateway's state and the logs.")
    ] = False,
) -> None:
    """Run keyhole end to end on this machine, in a temporary directory: a gateway, an example service
    with an agent, a login, a session, a snapshot and a logpoint, a few requests and the redacted
    results. Everything is stopped and removed at the end. Takes about 10 seconds."""
    started = time.monotonic()
    _service_file()
    try:
        root = Path(tempfile.mkdtemp(prefix="keyhole-demo-"))
    except OSError as exc:
        raise CliError(f"demo failed at step 0: cannot create a temporary directory: {exc}", exit_code=1) from None
    run = _Demo(root)
    typer.echo(f"keyhole demo: working in {root} ({'kept' if keep else 'removed'} at the end)")
    failure, exit_code = "", 1
    try:
        with _sigterm_interrupts():
            try:
                run.run()
            except _Failed as exc:
                failure = f"demo failed at step {run.step}: {exc}"
            except KeyboardInterrupt:
                failure, exit_code = f"demo interrupted at step {run.step}; everything it started is stopped", 130
            except Exception as exc:  # anything else is one line too, never a traceback
                failure = f"demo failed at step {run.step}: {type(exc).__name__}: {exc}"
    finally:
        run.stop_all(report=False)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    if failure:
        kept = f" (its logs are in {root})" if keep else ""
        raise CliError(failure + kept, exit_code=exit_code)
    where = f"kept {root}" if keep else f"removed {root}"
    typer.echo(f"\nkeyhole demo: done in {time.monotonic() - started:.1f} s; {where}")
