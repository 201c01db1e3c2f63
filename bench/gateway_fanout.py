"""How long a new probe takes to reach 100 connected agents through a real gateway.

    python bench/gateway_fanout.py [--agents 100] [--workers 4] [--probes 20] [--mode MODE] [--profile]

A gateway runs in a temporary directory. The agents are long-poll clients made of the real link's
parts, 25 threads to a worker process (100 agent processes would not fit on two cores): each one
enrolls with its own token (keyhole.agent.link.identity.enroll), says hello and long-polls the probe set
over mutual TLS with keyhole.agent.link.https_client.JsonClient, verifies each new probe command with
keyhole.agent.link.signed_probes.check_command, and uploads an "installed" status on its second
connection, as GatewayLink does. Then, probe after probe, the benchmark sets a snapshot probe with
the CLI's own call (POST /v1/sessions/{id}/probes, a new HTTPS connection each time, as
`keyhole snap` makes it) and polls it as `keyhole snap` does until every agent reported installed.

Latency is counted from the moment the POST returns (the goal: p99 <= 100 ms) and, separately,
from the moment it was sent: the gateway wakes the polls before it answers the POST, so an agent can
have its probe before the call returns (a negative latency). Clocks are time.monotonic(), which is
system-wide on Linux, so the worker processes' readings compare with the main process's.

Verification is pure-Python ed25519 (the agent imports only the standard library). Here 25 agents
share one process and 100 share two cores, so "delivery + verify" includes waiting for the others'
verifications; the CPU one verification costs is printed too (a real agent has its own process).

To see where the time goes: --mode no-status leaves out the status uploads (and so snap's report
loop); --mode isolate also has each agent wait a second after its delivery before it verifies,
reports and polls again, so that nothing competes with the gateway's answers to the other agents;
--profile prints where the gateway spends its CPU while the probes are set.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from gateway_common import Gateway, hello_body, percentile, running_gateway  # noqa: E402

SERVICE = "fanout"
GOAL_P99_MS = 100.0
POLL_WAIT = 20.0  # what GatewayLink asks for with the default dead-man grace (60 s / 3)
PROBE_TIMEOUT = 10.0
SNAP_REPORT_WAIT = 5.0  # keyhole.cli.engineer.probe_commands.REPORT_WAIT
ISOLATE_PAUSE = 1.0
MODES = ("agent", "no-status", "isolate")


# --- a worker process: its share of the agents ------------------------------------------------------


class LinkClient:
    """One agent's link, made of GatewayLink's own parts: enrollment, hello, the long poll, the
    signature check, the status upload on a second connection."""

    def __init__(self, index: int, config: Any, emit: Any, mode: str) -> None:
        self.index = index
        self.config = config
        self.emit = emit
        self.mode = mode
        self.instance = "i-" + secrets.token_hex(6)
        self.held: dict[str, str] = {}
        self.digest = ""

    def run(self, stop: threading.Event) -> None:
        from keyhole.agent.link.https_client import JsonClient
        from keyhole.agent.link.identity import enroll
        from keyhole.protocol.link import HELLO_PATH, PROBES_PATH

        identity = enroll(self.config)
        poll = JsonClient(self.config.host, identity.agent_port, identity.context)
        upload = JsonClient(self.config.host, identity.agent_port, identity.context)
        poll.request("POST", HELLO_PATH, hello_body(self.instance, self.config.service))
        first = True
        while not stop.is_set():
            query = urlencode({"instance": self.instance, "have": self.digest, "wait": f"{POLL_WAIT:g}"})
            answer = poll.request("GET", f"{PROBES_PATH}?{query}", timeout=POLL_WAIT + 10)
            received = time.monotonic()
            fresh = [e["id"] for e in answer["probes"] if self.held.get(e["id"]) != e["sig"]]
            if fresh and self.mode == "isolate":
                stop.wait(ISOLATE_PAUSE)  # nothing of this agent's competes with the others' deliveries
            cpu, started = time.thread_time(), time.monotonic()
            self.held = self.verify(answer["probes"], identity.signing_key)
            verified = time.monotonic() if self.mode != "isolate" else received + time.monotonic() - started
            verify_cpu = time.thread_time() - cpu
            self.digest = str(answer["digest"])
            if first:
                first = False
                self.emit({"ready": self.index})
            if fresh:
                line = {"client": self.index, "probes": fresh, "received": received, "verified": verified}
                self.emit(line | {"cpu": verify_cpu})
                if self.mode != "no-status":
                    self.report_installed(upload, fresh)
        poll.close()
        upload.close()

    def verify(self, envelopes: list[dict[str, str]], signing_key: bytes) -> dict[str, str]:
        """What GatewayLink._apply checks: each new or changed command, signature first."""
        from keyhole.agent.link.signed_probes import check_command
        from keyhole.protocol.redaction import DEFAULT_RULES

        wanted = {}
        for envelope in envelopes:
            if self.held.get(envelope["id"]) != envelope["sig"]:
                accepted = check_command(
                    envelope,
                    signing_key=signing_key,
                    service=self.config.service,
                    instance=self.instance,
                    rules=DEFAULT_RULES,
                )
                if accepted is None:
                    continue
            wanted[envelope["id"]] = envelope["sig"]
        return wanted

    def report_installed(self, upload: Any, probe_ids: list[str]) -> None:
        from keyhole.protocol.events import format_timestamp
        from keyhole.protocol.link import EVENTS_PATH

        now = format_timestamp(time.time())
        events = [
            {"probe": p, "kind": "installed", "ts": now, "thread": "keyhole-agent", "pid": os.getpid()}
            | {"locations": ["app.py:1"]}
            for p in probe_ids
        ]
        upload.request("POST", EVENTS_PATH, {"instance": self.instance, "events": events})


def worker(spec: dict[str, Any]) -> int:
    from keyhole.agent.link.config import build_config

    lock = threading.Lock()

    def emit(line: dict[str, Any]) -> None:
        with lock:
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()

    stop = threading.Event()
    threads = []
    for index, token in zip(spec["indexes"], spec["tokens"], strict=True):
        config = build_config(spec["url"], service=SERVICE, token=token, ca=spec["ca_pem"], environ={})
        client = LinkClient(index, config, emit, spec["mode"])

        def guarded(client: LinkClient = client) -> None:
            try:
                client.run(stop)
            except Exception as exc:  # one client's failure is reported, not a hang
                emit({"failed": client.index, "error": f"{type(exc).__name__}: {exc}"})

        threads.append(threading.Thread(target=guarded, daemon=True))
    for thread in threads:
        thread.start()
    sys.stdin.read()  # the main process closes stdin when the benchmark is over
    stop.set()
    return 0


# --- the main process ---------------------------------------------------------------------------------


def start_workers(gateway: Gateway, tokens: list[str], args: argparse.Namespace, lines: queue.Queue[Any]) -> list[Any]:
    workers = args.workers
    processes = []
    share = -(-len(tokens) // workers)
    for w in range(workers):
        indexes = list(range(w * share, min(len(tokens), (w + 1) * share)))
        spec = {"url": gateway.url, "ca_pem": gateway.ca_pem, "tokens": [tokens[i] for i in indexes]}
        spec.update(indexes=indexes, mode=args.mode)
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

        def read(process: subprocess.Popen[str] = process) -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(json.loads(line))

        threading.Thread(target=read, daemon=True).start()
        processes.append(process)
    return processes


def snap(gateway: Gateway, session: str, line: int, report: bool) -> tuple[float, float, str, float]:
    """`keyhole snap app.py:LINE`, its HTTP calls: the POST (timed), then the CLI's report loop (until
    every connected agent reported, as the CLI waits; with report=False, left out)."""
    from keyhole.cli.gateway_client import call

    path = f"/v1/sessions/{session}/probes"
    body = {"kind": "snapshot", "file": "app.py", "line": line}
    sent = time.monotonic()
    response = call(gateway.url, gateway.ca_pem, "POST", path, token=gateway.access_token, body=body)
    returned = time.monotonic()
    if response.status_code != 201:
        raise RuntimeError(f"setting the probe failed: {response.status_code} {response.text}")
    probe_id = response.json()["id"]
    deadline = returned + SNAP_REPORT_WAIT
    while report:
        shown = call(gateway.url, gateway.ca_pem, "GET", f"{path}/{probe_id}", token=gateway.access_token).json()
        waiting = [r for r in shown["instances"] if r["state"] == "waiting" and r["connected"]]
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    return sent, returned, probe_id, time.monotonic() - returned


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4, help="processes the agents are spread over")
    parser.add_argument("--probes", type=int, default=20)
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="agent",
        help="agent: as GatewayLink (default); no-status: no installed status upload; isolate: each agent "
        f"waits {ISOLATE_PAUSE:g} s before verifying, reporting and polling again, and the CLI's report loop is "
        "left out, so that delivery is the gateway's fan-out alone",
    )
    parser.add_argument("--profile", action="store_true", help="sample the gateway's threads and print where it spends")
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))

    started = time.monotonic()
    lines: queue.Queue[Any] = queue.Queue()
    with running_gateway(profile=args.profile) as gateway:
        tokens = gateway.mint_tokens(SERVICE, args.agents)
        session = gateway.open_session(SERVICE)
        processes = start_workers(gateway, tokens, args, lines)
        try:
            result = measure(gateway, session, args, lines)
        finally:
            for process in processes:
                assert process.stdin is not None
                process.stdin.close()
            for process in processes:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
    result["seconds"] = round(time.monotonic() - started, 1)
    report(result, args)
    return 0


def measure(gateway: Gateway, session: str, args: argparse.Namespace, lines: queue.Queue[Any]) -> dict[str, Any]:
    ready: set[int] = set()
    failures: list[str] = []
    deadline = time.monotonic() + 90
    while len(ready) + len(failures) < args.agents and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if "ready" in line:
            ready.add(line["ready"])
        elif "failed" in line:
            failures.append(line["error"])
    connected_before = gateway.wait_connected(SERVICE, len(ready), timeout=10)
    time.sleep(0.5)  # every agent back in its long poll

    delivery, delivery_sent, verified, verify_cpu, snap_total, post = [], [], [], [], [], []
    missing = 0
    cpu_before = gateway.cpu_seconds()
    gateway.profile_window(True)
    for number in range(args.probes):
        sent, returned, probe_id, snap_seconds = snap(gateway, session, 1000 + number, args.mode == "agent")
        snap_total.append(snap_seconds * 1000)
        post.append((returned - sent) * 1000)
        got: set[int] = set()
        until = returned + PROBE_TIMEOUT
        while len(got) < len(ready) and time.monotonic() < until:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if "failed" in line:
                failures.append(line["error"])
            if probe_id not in line.get("probes", ()):
                continue
            got.add(line["client"])
            delivery.append((line["received"] - returned) * 1000)
            delivery_sent.append((line["received"] - sent) * 1000)
            verified.append((line["verified"] - returned) * 1000)
            verify_cpu.append(line["cpu"] * 1000)
        missing += len(ready) - len(got)
        # The agents' next polls are parked again before the next probe.
        time.sleep(0.3 + (ISOLATE_PAUSE if args.mode == "isolate" else 0))

    gateway.profile_window(False)
    gateway_cpu = (gateway.cpu_seconds() - cpu_before) / args.probes * 1000
    connected_after = gateway.connected(SERVICE)

    def stats(values: list[float]) -> dict[str, float]:
        return {k: round(percentile(values, q), 1) for k, q in (("p50", 50), ("p99", 99), ("max", 100))}

    return {
        "bench": "gateway_fanout",
        "mode": args.mode,
        "agents": args.agents,
        "enrolled_and_polling": len(ready),
        "connected_before": connected_before,
        "connected_after": connected_after,
        "probes": args.probes,
        "deliveries": len(delivery),
        "missing": missing,
        "failures": failures[:5],
        "delivery_ms": stats(delivery),
        "delivery_from_send_ms": stats(delivery_sent),
        "before_return": sum(1 for d in delivery if d < 0),
        "delivery_verify_ms": stats(verified),
        "verify_cpu_ms": stats(verify_cpu),
        "post_ms": stats(post),
        "snap_report_ms": stats(snap_total) if args.mode == "agent" else None,
        "gateway_cpu_ms_per_probe": round(gateway_cpu, 1),
        "goal_p99_ms": GOAL_P99_MS,
        "met": bool(delivery) and missing == 0 and percentile(delivery, 99) <= GOAL_P99_MS,
    }


def report(r: dict[str, Any], args: argparse.Namespace) -> None:
    def row(label: str, key: str, goal: str = "") -> None:
        s = r[key]
        print(f"{label:44}{s['p50']:>10.1f}{s['p99']:>10.1f}{s['max']:>10.1f}   {goal}")

    print(
        f"\ngateway fan-out: {r['agents']} agents in {args.workers} processes, {r['probes']} probes one at a time, "
        f"mode {r['mode']}"
    )
    print(
        f"agents polling {r['enrolled_and_polling']}, connected (gateway's count) {r['connected_before']} before and "
        f"{r['connected_after']} after; deliveries {r['deliveries']}, missing {r['missing']}"
    )
    print(f"{'ms':44}{'p50':>10}{'p99':>10}{'max':>10}")
    row("delivery, after the POST returned", "delivery_ms", f"goal p99 <= {GOAL_P99_MS:.0f} ms")
    row("delivery, after the POST was sent", "delivery_from_send_ms")
    row("delivery + signature verified", "delivery_verify_ms", f"goal p99 <= {GOAL_P99_MS:.0f} ms")
    row("CPU of one verification (agent's thread)", "verify_cpu_ms")
    row("the POST itself (CLI's new HTTPS connection)", "post_ms")
    if r["snap_report_ms"]:
        row("snap's report loop, after the POST returned", "snap_report_ms")
    print(f"deliveries before the POST returned: {r['before_return']} of {r['deliveries']}")
    print(
        f"gateway CPU per probe: {r['gateway_cpu_ms_per_probe']:.0f} ms (the POST, {r['agents']} answers and "
        "re-polls, the status uploads, snap's report loop)"
    )
    for failure in r["failures"]:
        print(f"agent failure: {failure}")
    print(f"goal met: {'yes' if r['met'] else 'NO'} ({r['seconds']} s)")
    print(json.dumps(r))


if __name__ == "__main__":
    sys.exit(main())
