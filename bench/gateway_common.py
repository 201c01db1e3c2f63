"""What the gateway benchmarks share: a real gateway (`keyhole gateway init` and `keyhole gateway serve`
as subprocesses, in a temporary directory removed afterwards, on free loopback ports), the admin's
calls to its user API over HTTPS, what benchmark agents say in their hello, percentiles, and an
optional CPU profile of the gateway process.

    with running_gateway() as gateway:
        tokens = gateway.mint_tokens("orders", 100)
        session = gateway.open_session("orders")

The profile (`--profile` in each benchmark) runs the gateway in a wrapper that times each thread-pool
task with its thread's CPU clock and samples every thread's stack, charging the CPU used since the
last sample: the gateway works on an event loop and a thread pool, and cProfile cannot follow several
threads on Python 3.12. It covers the benchmark's measuring window only. It costs the gateway some
CPU, so a profiled run's figures are not the benchmark's.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
KEYHOLE = str(Path(sys.executable).parent / "keyhole")
ADMIN_PASSWORD = "bench-admin-password"
PROFILE_EVERY = 0.004
_ADDRESS = re.compile(r"keyhole gateway: (user API|agents) on https://([0-9.]+):(\d+)")


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q% of the values at or below it."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


@dataclass
class Gateway:
    data: Path
    process: subprocess.Popen[str]
    port: int
    agent_port: int
    access_token: str = ""
    profile: Path | None = None
    output: list[str] = field(default_factory=list)
    _client: httpx.Client | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca(self) -> Path:
        return self.data / "ca.pem"

    @property
    def ca_pem(self) -> str:
        return self.ca.read_text()

    @property
    def database(self) -> Path:
        return self.data / "keyhole.db"

    def client(self) -> httpx.Client:
        if self._client is None:
            context = ssl.create_default_context(cafile=str(self.ca))
            headers = {"Authorization": f"Bearer {self.access_token}"} if self.access_token else {}
            self._client = httpx.Client(base_url=self.url, verify=context, timeout=30, headers=headers)
        return self._client

    def api(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201)) -> Any:
        response = self.client().request(method, path, json=body)
        if response.status_code not in ok:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    def login(self) -> None:
        answer = self.api("POST", "/v1/auth/login", {"user": "admin", "password": ADMIN_PASSWORD})
        self.access_token = answer["access_token"]
        if self._client is not None:
            self._client.close()
            self._client = None

    def mint_tokens(self, service: str, count: int, ttl: str = "30m") -> list[str]:
        """Single-use enrollment tokens, over HTTP (what `keyhole agent enroll-token` calls)."""
        return [self.api("POST", "/v1/enroll-tokens", {"service": service, "ttl": ttl})["token"] for _ in range(count)]

    def open_session(self, service: str, ttl: str = "1h") -> str:
        body = {"service": service, "reason": "benchmark", "ttl": ttl}
        session_id: str = self.api("POST", "/v1/sessions", body)["id"]
        return session_id

    def set_probe(self, session: str, fields: dict[str, Any]) -> dict[str, Any]:
        probe: dict[str, Any] = self.api("POST", f"/v1/sessions/{session}/probes", fields)
        return probe

    def connected(self, service: str) -> int:
        return sum(1 for a in self.api("GET", "/v1/agents") if a["service"] == service and a["connected"])

    def wait_connected(self, service: str, count: int, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            found = self.connected(service)
            if found >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.2)

    def cpu_seconds(self) -> float:
        """User + system CPU the gateway process has used so far (Linux /proc; NaN elsewhere)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def profile_window(self, on: bool) -> None:
        """With --profile: count what the gateway does only between on and off (the measurement)."""
        if self.profile is not None:
            marker = Path(str(self.profile) + ".on")
            if on:
                marker.touch()
            else:
                marker.unlink(missing_ok=True)

    def log(self) -> str:
        return "".join(self.output)

    def stop(self) -> int:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def _start(data: Path, env: dict[str, str], profile: Path | None) -> Gateway:
    serve = ["gateway", "serve", "--data", str(data), "--listen", "127.0.0.1:0", "--agent-listen", "127.0.0.1:0"]
    if profile is None:
        args = [KEYHOLE, *serve]
    else:
        args = [sys.executable, str(HERE / "gateway_common.py"), "--profiled-serve", str(profile), *serve]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    output: list[str] = []
    ports: dict[str, int] = {}
    assert process.stdout is not None
    try:
        while len(ports) < 2:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"the gateway exited ({process.wait()}): {''.join(output)}")
            output.append(line)
            if match := _ADDRESS.search(line):
                ports[match.group(1)] = int(match.group(3))
    except BaseException:
        process.kill()
        process.wait()
        raise
    stream = process.stdout

    def drain() -> None:  # uvicorn's access log: read it, or the gateway blocks on a full pipe
        for line in stream:
            if len(output) < 100_000:
                output.append(line)

    threading.Thread(target=drain, daemon=True).start()
    return Gateway(data, process, ports["user API"], ports["agents"], profile=profile, output=output)


def _wait_serving(gateway: Gateway) -> None:
    deadline = time.monotonic() + 30
    while True:  # listening is not serving yet
        try:
            gateway.api("GET", "/v1/health")
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def running_gateway(profile: bool = False) -> Iterator[Gateway]:
    """A fresh gateway in a temporary directory, its admin logged in; stopped and removed afterwards.
    With profile, the gateway's CPU profile is printed after it stops."""
    root = Path(tempfile.mkdtemp(prefix="keyhole-bench-"))
    env = {**os.environ, "KEYHOLE_CONFIG_DIR": str(root / "config"), "KEYHOLE_ADMIN_PASSWORD": ADMIN_PASSWORD}
    profile_path = root / "gateway.prof" if profile else None
    gateway = None
    try:
        data = root / "state"
        init = subprocess.run(
            [KEYHOLE, "gateway", "init", "--data", str(data)], capture_output=True, text=True, env=env, check=False
        )
        if init.returncode != 0:
            raise RuntimeError(f"keyhole gateway init failed: {init.stderr.strip()}")
        gateway = _start(data, env, profile_path)
        _wait_serving(gateway)
        gateway.login()
        yield gateway
    finally:
        if gateway is not None:
            code = gateway.stop()
            if code != 0:
                print(f"warning: the gateway exited {code}; its last lines:\n{gateway.log()[-2000:]}", file=sys.stderr)
        if profile_path is not None and profile_path.exists():
            print_profile(profile_path)
        shutil.rmtree(root, ignore_errors=True)


def link_config(gateway: Gateway, service: str, token: str, deadman_grace: float = 60.0) -> Any:
    """The LinkConfig a real agent builds from KEYHOLE_GATEWAY, KEYHOLE_ENROLL_TOKEN and KEYHOLE_CA."""
    from keyhole.agent.link.config import build_config

    return build_config(
        gateway.url, service=service, token=token, ca=gateway.ca_pem, deadman_grace=deadman_grace, environ={}
    )


def hello_body(instance: str, service: str) -> dict[str, Any]:
    """What GatewayLink says in its hello."""
    import platform
    import socket

    import keyhole

    return {
        "instance": instance,
        "service": service,
        "host": socket.gethostname()[:255],
        "pid": os.getpid(),
        "python": platform.python_version(),
        "keyhole": keyhole.__version__,
        "labels": {},
    }


# --- the profiled gateway ------------------------------------------------------------------------------


def _where(code: Any, line: int) -> str:
    path = code.co_filename
    for marker in ("site-packages/", "/src/", "/lib/python"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{code.co_qualname} ({path}:{line})"


def _profiled_serve(out: str, argv: list[str]) -> int:
    """Run `keyhole gateway serve` in this process, profiled while the file OUT.on exists (the
    benchmark's measuring window). cProfile cannot follow several threads on Python 3.12, and the
    gateway works on an event loop and a thread pool, so:

    - each thread-pool task (everything FastAPI and the link routes hand to anyio.to_thread) is timed
      with the thread's own CPU clock, per function: exact, and time blocked on SQLite's lock or the
      disk is not counted;
    - every thread is sampled: every few milliseconds its CPU clock and stack are read, and the CPU
      it used since the last look is charged to that stack (a thread-pool task shorter than that is
      charged to the pool's idle wait, which is why the exact per-task figures are there too).
    """
    import functools

    import anyio.to_thread

    window = Path(out + ".on")
    pool: collections.Counter[str] = collections.Counter()
    pool_calls: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    original = anyio.to_thread.run_sync
    stop = threading.Event()

    async def run_sync(func: Any, *args: Any, **kwargs: Any) -> Any:
        target = func
        while isinstance(target, functools.partial):
            target = target.func
        name = _where(target.__code__, target.__code__.co_firstlineno) if hasattr(target, "__code__") else repr(target)

        def timed(*inner: Any) -> Any:
            started = time.thread_time()
            try:
                return func(*inner)
            finally:
                if window.exists():
                    pool[name] += time.thread_time() - started
                    pool_calls[name] += 1

        return await original(timed, *args, **kwargs)

    anyio.to_thread.run_sync = run_sync  # type: ignore[assignment]
    loop_thread = threading.get_ident()

    def sample() -> None:
        me = threading.get_ident()
        last: dict[int, float] = {}
        while not stop.wait(PROFILE_EVERY):
            active = window.exists()
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                try:
                    cpu = time.clock_gettime(time.pthread_getcpuclockid(ident))
                except OSError:
                    continue
                used, last[ident] = cpu - last.get(ident, cpu), cpu
                if not active or used <= 0:
                    continue
                name = names.get(ident, "?")
                threads["event loop" if ident == loop_thread else "thread pool" if "AnyIO" in name else name] += used
                own[_where(frame.f_code, frame.f_lineno)] += used
                seen = set()
                current: Any = frame
                while current is not None:
                    where = _where(current.f_code, current.f_code.co_firstlineno)
                    if where not in seen:
                        seen.add(where)
                        inclusive[where] += used
                    current = current.f_back

    sampler = threading.Thread(target=sample, name="bench-sampler", daemon=True)
    sampler.start()
    from keyhole.cli.main import main

    sys.argv = [KEYHOLE, *argv]
    try:
        code = main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    finally:
        stop.set()
        sampler.join()
        profile = {
            "threads": threads.most_common(),
            "pool": [(name, cpu, pool_calls[name]) for name, cpu in pool.most_common(15)],
            "own": own.most_common(20),
            "inclusive": inclusive.most_common(200),
        }
        Path(out).write_text(json.dumps(profile))
    return int(code or 0)


def print_profile(path: Path) -> None:
    profile = json.loads(path.read_text())
    total = sum(cpu for _, cpu in profile["threads"]) or 1.0
    threads = ", ".join(f"{name} {cpu:.2f} s" for name, cpu in profile["threads"])
    print(f"\ngateway CPU while measuring: {total:.2f} s ({threads})")
    print("  thread-pool tasks, CPU per function (exact):")
    for name, cpu, calls in profile["pool"][:10]:
        print(f"    {cpu:7.2f} s {calls:>7} calls {cpu / calls * 1000:7.2f} ms each  {name}")
    print("  all threads, sampled: innermost frame, share of the CPU, top 12:")
    for where, cpu in profile["own"][:12]:
        print(f"    {cpu / total:6.1%}  {where}")
    print("  all threads, sampled: with what they call (inclusive), top 20:")
    skip = ("asyncio/", "anyio/", "<module>", "contextlib.py", "typer/", "click/", "keyhole/cli/", "server.py:143")
    skip += ("_profiled_serve", "uvicorn/server.py", "runners.py", "threading.py", "concurrent/futures", "starlette/")
    skip += ("fastapi/", "uvicorn/protocols", "error_answers.py")
    for where, cpu in [(w, c) for w, c in profile["inclusive"] if not any(s in w for s in skip)][:20]:
        print(f"    {cpu / total:6.1%}  {where}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--profiled-serve":
        sys.exit(_profiled_serve(sys.argv[2], sys.argv[3:]))
    sys.exit(__doc__ or "")
