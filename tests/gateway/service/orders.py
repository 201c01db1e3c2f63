"""A small service for the end-to-end tests: it handles an "order" every 20 ms and prints one JSON
line per 10 orders, saying how many keyhole probes are installed in it and the slowest order so far.
Started either by `keyhole run --gateway ...` or with `keyhole.start()` (argument `start`); with
`fork` it forks once after the agent started, like a pre-forking server."""

from __future__ import annotations

import json
import os
import sys
import time

from keyhole.agent import active_agent


def handle(order_id: int) -> int:
    card_number = "4111 1111 1111 1111"
    email = "ann@example.com"
    amount = order_id * 3  # PROBE-LINE
    return amount + len(card_number) + len(email)


def installed() -> int:
    agent = active_agent()
    if agent is None:
        return -1
    return sum(1 for p in agent.probes() if p["state"] == "installed" and p["kind"] != "stacks")


def main() -> None:
    if "start" in sys.argv[1:] or "fork" in sys.argv[1:]:
        import keyhole

        keyhole.start(deadman_grace=float(os.environ.get("APP_DEADMAN_GRACE", "60")))
    if "fork" in sys.argv[1:]:
        os.fork()
    slowest = 0.0
    order = 0
    while True:
        started = time.perf_counter()
        handle(order)
        slowest = max(slowest, time.perf_counter() - started)
        if order % 10 == 0:
            line = {"pid": os.getpid(), "order": order, "probes": installed(), "slowest_ms": slowest * 1000}
            print(json.dumps(line), flush=True)
        order += 1
        time.sleep(0.02)


if __name__ == "__main__":
    main()
