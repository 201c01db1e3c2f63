"""How many events per second a real gateway ingests from agents.

    python bench/gateway_ingest.py [--uploaders 4] [--seconds 10] [--profile]

A gateway runs in a temporary directory, with a session holding a snapshot probe and a log probe.
The events are made by keyhole's own agent, in this process, before the gateway starts: a snapshot
probe and a logpoint in a small request handler (three frames of nested locals: a customer object,
order items, headers with a token and an e-mail address that redaction replaces), so their shape and
size are what real agents send. Then K uploaders, each enrolled as an agent with its own token and
certificate (it says hello as GatewayLink does), post batches of 500 events over mutual TLS to
POST /v1/agent/events for a fixed time, each on its own kept-alive connection. Each uploader encodes
its batch once, so that the machine's two cores go to the gateway, not to the clients.

Events per second are the `stored` counts the gateway returned, over the time from the start to the
last answer; the rows in the events table are counted too, as a check. The goal is >= 10 000 events/s,
for a 1:1 mix of snapshots and log lines; log lines alone and snapshots alone are measured as well.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import secrets
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from gateway_common import Gateway, hello_body, link_config, percentile, running_gateway  # noqa: E402

SERVICE = "ingest"
BATCH = 500
GOAL = 10_000.0
PHASES = (("snapshots + logs (1:1)", 0.5), ("logs only", 0.0), ("snapshots only", 1.0))
SAMPLES = 64  # distinct events of each kind, repeated to fill the batches


# --- the service code the events come from -------------------------------------------------------------


@dataclasses.dataclass
class Customer:
    id: int
    name: str
    email: str
    tier: str
    since: str


def handle_order(order_id: int, request: dict[str, Any]) -> float:
    customer = Customer(order_id, f"Customer {order_id}", f"c{order_id}@example.com", "gold", "2021-03-04")  # noqa: F841
    items = [
        {"sku": f"SKU-{order_id % 97}-{n}", "qty": n + 1, "price": round(9.99 * (n + 1), 2), "tags": ["sale", "eu"]}
        for n in range(4)
    ]
    totals = {"net": sum(i["price"] * i["qty"] for i in items), "currency": "EUR", "discounts": [0.1, 0.05]}
    shipping = {"address": {"street": "1 Main St", "city": "Springfield", "zip": "12345"}, "method": "express"}  # noqa: F841
    total = round(totals["net"] * (1 - sum(totals["discounts"])), 2)  # LOGPOINT
    return total  # SNAPSHOT


def dispatch(environ: dict[str, Any]) -> float:
    request = {"method": environ["REQUEST_METHOD"], "path": environ["PATH_INFO"], "query": environ["QUERY_STRING"]}
    headers = {"user-agent": "curl/8.5", "authorization": "Bearer abc.def.ghi", "x-request-id": environ["ID"]}
    order_id = int(environ["QUERY_STRING"].split("=")[1])
    return handle_order(order_id, request) if headers else 0.0


def application(environ: dict[str, Any]) -> float:
    started = time.perf_counter()
    result = dispatch(environ)
    elapsed_ms = (time.perf_counter() - started) * 1000
    return result + elapsed_ms * 0


def _line(marker: str) -> int:
    for number, text in enumerate(Path(__file__).read_text().splitlines(), start=1):
        if text.rstrip().endswith(f"# {marker}"):
            return number
    raise AssertionError(marker)


def make_events() -> dict[str, list[dict[str, Any]]]:
    """Snapshots and log lines as keyhole's agent makes them, from the handler above."""
    from keyhole.agent import Agent

    events: list[dict[str, Any]] = []
    agent = Agent(events.append, cpu_budget=1000.0)
    agent.start()
    agent.capture_limiter.__init__(1e9)  # type: ignore[misc]
    try:
        path = str(Path(__file__).resolve())
        limits = {"rate": 10_000, "max_hits": 10_000}
        snap = {"id": "s", "kind": "snapshot", "file": path, "line": _line("SNAPSHOT"), **limits}
        template = "order {order_id}: {len(items)} items, {totals['net']} {totals['currency']} for {customer.email}"
        log = {"id": "l", "kind": "log", "file": path, "line": _line("LOGPOINT"), "template": template, **limits}
        for spec in (snap, log):
            state = agent.add_probe(spec).wait(10)
            if state != "installed":
                raise RuntimeError(f"the event-making probe {spec['id']} is {state}: {agent.probes()}")
        for n in range(SAMPLES):
            environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/orders", "QUERY_STRING": f"id={1000 + n}"}
            application({**environ, "ID": f"req-{secrets.token_hex(4)}"})
    finally:
        agent.stop()
    found = {kind: [e for e in events if e["kind"] == kind] for kind in ("snapshot", "log")}
    if any(len(v) < SAMPLES for v in found.values()):
        raise RuntimeError(f"the agent made too few events: { {k: len(v) for k, v in found.items()} }")
    return found


def batch(samples: dict[str, list[dict[str, Any]]], probes: dict[str, str], snapshot_share: float) -> list[Any]:
    out = []
    snapshots = round(BATCH * snapshot_share)
    for n in range(BATCH):
        kind = "snapshot" if n * snapshots // BATCH != (n + 1) * snapshots // BATCH else "log"
        out.append({**samples[kind][n % SAMPLES], "probe": probes[kind]})
    return out


# --- uploaders ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Uploader:
    identity: Any
    instance: str
    host: str
    stored: int = 0
    requests: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)
    latencies: list[float] = dataclasses.field(default_factory=list)
    last: float = 0.0

    def run(self, body: bytes, start: threading.Barrier, stop_at: list[float]) -> None:
        from keyhole.protocol.link import EVENTS_PATH

        connection = http.client.HTTPSConnection(
            self.host, self.identity.agent_port, context=self.identity.context, timeout=120
        )
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        self.stored = self.requests = 0
        self.latencies = []
        start.wait()
        try:
            while time.monotonic() < stop_at[0]:
                sent = time.monotonic()
                connection.request("POST", EVENTS_PATH, body=body, headers=headers)
                response = connection.getresponse()
                answer = response.read()
                self.last = time.monotonic()
                if response.status != 200:
                    self.errors.append(f"{response.status} {answer[:200]!r}")
                    continue
                self.stored += json.loads(answer)["stored"]
                self.requests += 1
                self.latencies.append((self.last - sent) * 1000)
        except (OSError, http.client.HTTPException) as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()


def enroll_uploaders(gateway: Gateway, count: int) -> list[Uploader]:
    from keyhole.agent.link.https_client import JsonClient
    from keyhole.agent.link.identity import enroll
    from keyhole.protocol.link import HELLO_PATH

    uploaders = []
    for token in gateway.mint_tokens(SERVICE, count):
        config = link_config(gateway, SERVICE, token)
        identity = enroll(config)
        instance = "i-" + secrets.token_hex(6)
        client = JsonClient(config.host, identity.agent_port, identity.context)
        client.request("POST", HELLO_PATH, hello_body(instance, SERVICE))
        client.close()
        uploaders.append(Uploader(identity, instance, config.host))
    return uploaders


def event_rows(gateway: Gateway) -> int:
    with sqlite3.connect(f"file:{gateway.database}?mode=ro", uri=True, timeout=30) as db:
        count: int = db.execute("SELECT count(*) FROM events").fetchone()[0]
    return count


def set_probes(gateway: Gateway) -> dict[str, str]:
    """A session with a snapshot probe and a logpoint: the probe ids, by kind, the events will name."""
    session = gateway.open_session(SERVICE)
    specs = {
        "snapshot": {"kind": "snapshot", "file": "shop/orders.py", "line": 42},
        "log": {"kind": "log", "file": "shop/orders.py", "line": 41, "template": "order {order_id}"},
    }
    return {kind: gateway.set_probe(session, spec)["id"] for kind, spec in specs.items()}


def start_uploads(
    uploaders: list[Uploader], events: list[Any]
) -> tuple[list[threading.Thread], threading.Barrier, list[float]]:
    """One thread per uploader, each encoding the batch once, held at the barrier until the caller
    waits on it too; they stop at stop_at[0] (monotonic), which starts at infinity."""
    bodies = [json.dumps({"instance": u.instance, "events": events}, separators=(",", ":")).encode() for u in uploaders]
    start = threading.Barrier(len(uploaders) + 1)
    stop_at = [float("inf")]
    threads = [
        threading.Thread(target=u.run, args=(body, start, stop_at), daemon=True)
        for u, body in zip(uploaders, bodies, strict=True)
    ]
    for thread in threads:
        thread.start()
    return threads, start, stop_at


def phase(
    gateway: Gateway, uploaders: list[Uploader], events: list[Any], seconds: float, profile: bool
) -> dict[str, Any]:
    batch_bytes = len(json.dumps({"instance": uploaders[0].instance, "events": events}, separators=(",", ":")))
    rows_before = event_rows(gateway)
    cpu_before = gateway.cpu_seconds()
    threads, start, stop_at = start_uploads(uploaders, events)
    if profile:
        gateway.profile_window(True)
    started = time.monotonic()
    stop_at[0] = started + seconds
    start.wait()
    for thread in threads:
        thread.join()
    gateway.profile_window(False)
    elapsed = max(max(u.last for u in uploaders) - started, 1e-3)
    cpu = gateway.cpu_seconds() - cpu_before
    stored = sum(u.stored for u in uploaders)
    latencies = [x for u in uploaders for x in u.latencies]
    return {
        "events_per_s": round(stored / elapsed),
        "stored": stored,
        "rows": event_rows(gateway) - rows_before,
        "requests": sum(u.requests for u in uploaders),
        "seconds": round(elapsed, 2),
        "batch_kb": round(batch_bytes / 1024),
        "batch_ms_p50": round(percentile(latencies, 50), 1),
        "batch_ms_p99": round(percentile(latencies, 99), 1),
        "gateway_cpu_ms_per_1000": round(cpu / max(stored, 1) * 1e6, 1),
        "errors": [e for u in uploaders for e in u.errors][:3],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploaders", type=int, default=4, help="agents uploading at once, one connection each")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--profile", action="store_true", help="profile the gateway during the first phase")
    args = parser.parse_args()

    began = time.monotonic()
    samples = make_events()
    sizes = {kind: sum(len(json.dumps(e)) for e in found) / len(found) for kind, found in samples.items()}
    results = {}
    with running_gateway(profile=args.profile) as gateway:
        probes = set_probes(gateway)
        uploaders = enroll_uploaders(gateway, args.uploaders)
        for number, (label, share) in enumerate(PHASES):
            profiled = args.profile and number == 0  # the profile covers the first phase only
            results[label] = phase(gateway, uploaders, batch(samples, probes, share), args.seconds, profiled)
    report(results, sizes, args, time.monotonic() - began)
    return 0


def report(results: dict[str, dict[str, Any]], sizes: dict[str, float], args: argparse.Namespace, took: float) -> None:
    print(
        f"\ngateway ingest: {args.uploaders} agents uploading batches of {BATCH} events over mutual TLS, "
        f"{args.seconds:g} s per kind of batch"
    )
    print(f"events as the agent made them: snapshot {sizes['snapshot']:.0f} bytes, log line {sizes['log']:.0f} bytes")
    header = ("events/s", "stored", "rows", "batch KiB", "batch p50", "batch p99", "gw CPU/1k ev")
    print(f"{'':24}" + "".join(f"{h:>13}" for h in header))
    for label, r in results.items():
        cells = (
            f"{r['events_per_s']:,}",
            f"{r['stored']:,}",
            f"{r['rows']:,}",
            f"{r['batch_kb']}",
            f"{r['batch_ms_p50']:.0f} ms",
            f"{r['batch_ms_p99']:.0f} ms",
            f"{r['gateway_cpu_ms_per_1000']:.0f} ms",
        )
        print(f"{label:24}" + "".join(f"{c:>13}" for c in cells))
        for error in r["errors"]:
            print(f"  upload error: {error}")
    headline = results[PHASES[0][0]]["events_per_s"]
    print(f"goal >= {GOAL:,.0f} events/s ({PHASES[0][0]}): {'met' if headline >= GOAL else 'NOT met'} ({took:.0f} s)")
    summary = {"bench": "gateway_ingest", "uploaders": args.uploaders, "batch": BATCH, "goal": GOAL}
    summary["phases"] = results
    summary["met"] = headline >= GOAL
    print(json.dumps(summary))


if __name__ == "__main__":
    sys.exit(main())
