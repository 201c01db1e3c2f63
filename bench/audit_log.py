"""What the audit log costs: appends per second with the gateway under load, `keyhole audit verify` of
1 000 000 entries, and the time of an inclusion proof.

    python bench/audit_log.py [--entries 1000000] [--seconds 8]

One real gateway runs in a temporary directory throughout.

1. Appends.
   - The append itself: this process opens the gateway's state (GatewayContext, while the gateway
     is idle) and appends entries one per transaction, as every audited action does, for a fixed
     time. Baseline, same run: the same entries inserted one per transaction into a plain table of
     a separate SQLite file in the same directory, with the same settings (WAL, synchronous=NORMAL):
     no canonical JSON, no tree, no log lock.
   - Through the gateway, idle and under load: 4 clients call an audited endpoint (GET
     /v1/audit/entries past the end of the log: one "audit.read" append, nothing read) on kept-alive
     HTTPS connections, first with the gateway idle, then while 2 agents upload snapshot and log
     batches as fast as it takes them (each upload is an audited transaction too). Baseline, same
     run: the same clients calling GET /v1/auth/me (authenticated, not audited), idle and loaded.
2. Verify. The log is grown to --entries entries by a bulk writer (entries made by the log's own
   entry_body, the tree's nodes computed as the gateway computes them, tens of thousands per
   transaction, so that building a million takes a minute and not an hour), the gateway signs its
   checkpoint, and `keyhole audit verify --data DIR` runs as a subprocess, timed. Goal: <= 10 s.
   Baseline, same run: reading every entry's body out of the database, nothing else.
3. Inclusion proofs. GET /v1/audit/proof/inclusion for random entries of the million, over HTTPS on
   one kept-alive connection; each proof is checked. Baseline, same run: GET /v1/auth/me, the
   cheapest authenticated call.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from gateway_common import KEYHOLE, Gateway, percentile, running_gateway  # noqa: E402

GOAL_VERIFY_S = 10.0


def _details(n: int) -> dict[str, Any]:
    return {
        "session": f"s-{n % 97:04x}",
        "probe": f"p-{n:08x}",
        "spec": {"kind": "snapshot", "file": "a.py", "line": n % 500},
    }


# --- 1. appends ------------------------------------------------------------------------------------------


def _append_rate(context: Any, seconds: float) -> float:
    from keyhole.gateway.audit import log as audit_log

    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        with context.audited() as db:
            audit_log.append(db, "user:bench", "probe.set", **_details(count))
        count += 1
    return count / (time.perf_counter() - started)


def _call_rate(gateway: Gateway, path: str, seconds: float, clients: int = 4) -> float:
    counts = [0] * clients
    stop_at = time.monotonic() + seconds

    def run(n: int) -> None:
        with httpx.Client(
            base_url=gateway.url,
            verify=ssl.create_default_context(cadata=gateway.ca_pem),
            headers={"Authorization": f"Bearer {gateway.access_token}"},
            timeout=30,
        ) as client:
            while time.monotonic() < stop_at:
                client.get(path).raise_for_status()
                counts[n] += 1

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - started)


def _baseline_rate(directory: Path, seconds: float) -> float:
    with sqlite3.connect(directory / "baseline.db", isolation_level=None) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS plain (seq INTEGER PRIMARY KEY, body BLOB)")
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            body = json.dumps({"seq": count, "details": _details(count)}).encode()
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO plain (seq, body) VALUES (?, ?)", (count, body))
            db.execute("COMMIT")
            count += 1
        return count / (time.perf_counter() - started)


def _ingest_load(gateway: Gateway, stop: threading.Event) -> dict[str, float]:
    """Two agents uploading 500-event batches (half snapshots, half log lines) until stopped."""
    import gateway_ingest

    samples = gateway_ingest.make_events()
    probes = gateway_ingest.set_probes(gateway)
    uploaders = gateway_ingest.enroll_uploaders(gateway, 2)
    threads, start, stop_at = gateway_ingest.start_uploads(uploaders, gateway_ingest.batch(samples, probes, 0.5))
    started = time.monotonic()
    start.wait()
    stop.wait()
    stop_at[0] = time.monotonic()
    for thread in threads:
        thread.join()
    return {"events_per_s": sum(u.stored for u in uploaders) / max(time.monotonic() - started, 1e-3)}


# --- 2. a million entries, and verify ------------------------------------------------------------------


def _bulk_append(database: Path, count: int) -> float:
    """Grow the log by `count` entries, fast: the gateway's entry_body and node hashes, written in big
    transactions straight into its database (while it runs: its writes wait for ours)."""
    from keyhole.gateway.audit.log import entry_body
    from keyhole.verifier.merkle import leaf_hash, node_hash

    started = time.perf_counter()
    with sqlite3.connect(database, isolation_level=None, timeout=60) as db:
        db.execute("BEGIN IMMEDIATE")
        size = db.execute("SELECT coalesce(max(seq) + 1, 0) FROM audit_entries").fetchone()[0]
        done = 0
        while done < count:
            chunk = min(50_000, count - done)
            entries, nodes = [], []
            for seq in range(size + done, size + done + chunk):
                at = time.time()
                body = entry_body(seq, at, "user:bench", "probe.set", _details(seq))
                entries.append((seq, at, "user:bench", "probe.set", body))
                level, idx, value = 0, seq, leaf_hash(body)
                nodes.append((0, seq, value))
                while idx & 1:
                    left = db.execute("SELECT hash FROM audit_nodes WHERE level = ? AND idx = ?", (level, idx - 1))
                    found = left.fetchone()
                    if found is None:  # written in this chunk, not yet in the database
                        found = (next(h for lv, i, h in reversed(nodes) if lv == level and i == idx - 1),)
                    level, idx, value = level + 1, idx >> 1, node_hash(found[0], value)
                    nodes.append((level, idx, value))
            db.executemany("INSERT INTO audit_entries (seq, at, actor, action, body) VALUES (?, ?, ?, ?, ?)", entries)
            db.executemany("INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)
            done += chunk
            db.execute("COMMIT")
            db.execute("BEGIN IMMEDIATE")
        db.execute("COMMIT")
    return time.perf_counter() - started


def _scan(database: Path) -> tuple[float, int]:
    started = time.perf_counter()
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        total = 0
        for (body,) in db.execute("SELECT body FROM audit_entries ORDER BY seq"):
            total += len(body)
    return time.perf_counter() - started, total


def _verify(gateway: Gateway, config: Path) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(
        [KEYHOLE, "audit", "verify", "--data", str(gateway.data)],
        capture_output=True,
        text=True,
        env={"KEYHOLE_CONFIG_DIR": str(config), "PATH": str(Path(KEYHOLE).parent)},
        check=False,
    )
    took = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"keyhole audit verify failed: {result.stderr.strip()}")
    return took, result.stdout.strip()


# --- 3. inclusion proofs -------------------------------------------------------------------------------


def _proofs(gateway: Gateway, samples: int) -> dict[str, Any]:
    from keyhole.gateway.storage.state_paths import StatePaths
    from keyhole.verifier.checkpoints import open_note
    from keyhole.verifier.keys import load_signing_key
    from keyhole.verifier.merkle import leaf_hash, verify_inclusion

    checkpoint = gateway.api("POST", "/v1/audit/checkpoint")
    key = load_signing_key(StatePaths(gateway.data).signing_key).public_key()
    note = open_note(checkpoint["note"], key)
    with sqlite3.connect(f"file:{gateway.database}?mode=ro", uri=True) as db:
        picks = random.Random(7).sample(range(note.size), samples)
        bodies = {
            seq: bytes(body)
            for seq, body in db.execute(
                f"SELECT seq, body FROM audit_entries WHERE seq IN ({','.join('?' * len(picks))})", picks
            )
        }
    client = gateway.client()
    proof_ms, me_ms = [], []
    for seq in picks:
        started = time.perf_counter()
        answer = client.get("/v1/audit/proof/inclusion", params={"index": seq, "size": note.size}).json()
        proof_ms.append((time.perf_counter() - started) * 1000)
        proof = [base64.b64decode(h) for h in answer["proof"]]
        verify_inclusion(seq, note.size, leaf_hash(bodies[seq]), proof, note.root)
        started = time.perf_counter()
        client.get("/v1/auth/me").raise_for_status()
        me_ms.append((time.perf_counter() - started) * 1000)
    return {
        "size": note.size,
        "proof_hashes": len(proof),
        "proof_ms_p50": round(percentile(proof_ms, 50), 2),
        "proof_ms_p99": round(percentile(proof_ms, 99), 2),
        "me_ms_p50": round(percentile(me_ms, 50), 2),
        "ratio_p50": round(percentile(proof_ms, 50) / percentile(me_ms, 50), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="the log's size for verify and proofs")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each append measurement")
    parser.add_argument("--proofs", type=int, default=200)
    args = parser.parse_args()
    from keyhole.gateway.context import GatewayContext
    from keyhole.gateway.storage.state_paths import StatePaths

    results: dict[str, Any] = {"bench": "audit_log"}
    began = time.monotonic()
    with running_gateway() as gateway:
        config = gateway.data.parent / "config"
        context = GatewayContext.open(StatePaths(gateway.data))
        try:
            results["baseline_per_s"] = round(_baseline_rate(gateway.data.parent, args.seconds))
            results["appends_per_s"] = round(_append_rate(context, args.seconds))
        finally:
            context.close()
        results["me_idle_per_s"] = round(_call_rate(gateway, "/v1/auth/me", args.seconds))
        audited = f"/v1/audit/entries?after={2**62}&limit=1"
        results["audited_idle_per_s"] = round(_call_rate(gateway, audited, args.seconds))
        stop = threading.Event()
        load: dict[str, float] = {}
        loader = threading.Thread(target=lambda: load.update(_ingest_load(gateway, stop)), daemon=True)
        loader.start()
        time.sleep(3.0)  # the uploaders enrolled and running
        results["audited_loaded_per_s"] = round(_call_rate(gateway, audited, args.seconds))
        results["me_loaded_per_s"] = round(_call_rate(gateway, "/v1/auth/me", args.seconds))
        stop.set()
        loader.join()
        results["load_events_per_s"] = round(load.get("events_per_s", 0.0))
        grow = max(0, args.entries - _size(gateway.database))
        results["bulk_write_s"] = round(_bulk_append(gateway.database, grow), 1)
        time.sleep(1.5)  # the gateway signs its checkpoint of the grown log
        scan_s, scanned = _scan(gateway.database)
        verify_s, verified = _verify(gateway, config)
        results.update(
            entries=_size(gateway.database),
            scan_s=round(scan_s, 2),
            scan_mb=round(scanned / 1e6),
            verify_s=round(verify_s, 2),
            verify_ratio=round(verify_s / scan_s, 1),
            verified=verified,
        )
        results["proofs"] = _proofs(gateway, args.proofs)
    results["seconds"] = round(time.monotonic() - began)
    results["met"] = results["verify_s"] <= GOAL_VERIFY_S
    _report(results)
    return 0


def _size(database: Path) -> int:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        return int(db.execute("SELECT coalesce(max(seq) + 1, 0) FROM audit_entries").fetchone()[0])


def _report(r: dict[str, Any]) -> None:
    p = r["proofs"]
    print("\naudit log")
    print(
        f"  appends in-process, one per transaction:        {r['appends_per_s']:>8,}/s  "
        f"(plain insert, one per transaction: {r['baseline_per_s']:,}/s; ratio "
        f"{r['appends_per_s'] / r['baseline_per_s']:.2f})"
    )
    print(
        f"  audited calls through the gateway, idle:        {r['audited_idle_per_s']:>8,}/s  "
        f"(GET /v1/auth/me, not audited: {r['me_idle_per_s']:,}/s; ratio "
        f"{r['audited_idle_per_s'] / r['me_idle_per_s']:.2f})"
    )
    print(
        f"  audited calls through the gateway, loaded:      {r['audited_loaded_per_s']:>8,}/s  "
        f"(GET /v1/auth/me under the same load: {r['me_loaded_per_s']:,}/s; ratio "
        f"{r['audited_loaded_per_s'] / r['me_loaded_per_s']:.2f})"
    )
    print(f"    the load: {r['load_events_per_s']:,} events/s ingested from 2 agents, each upload audited")
    print(
        f"  verify {r['entries']:,} entries: {r['verify_s']:.2f} s (goal <= {GOAL_VERIFY_S:g} s: "
        f"{'met' if r['met'] else 'NOT met'}); reading the bodies alone {r['scan_s']:.2f} s "
        f"({r['scan_mb']} MB), ratio {r['verify_ratio']}"
    )
    print(f"    {r['verified']}")
    print(
        f"  inclusion proof at {p['size']:,} entries ({p['proof_hashes']} hashes), over HTTPS: p50 "
        f"{p['proof_ms_p50']} ms, p99 {p['proof_ms_p99']} ms; GET /v1/auth/me p50 {p['me_ms_p50']} ms "
        f"(ratio {p['ratio_p50']})"
    )
    print(f"  bulk writing the log took {r['bulk_write_s']} s; the whole run {r['seconds']} s")
    print(json.dumps(r))


if __name__ == "__main__":
    sys.exit(main())
