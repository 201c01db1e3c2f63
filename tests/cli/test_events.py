"""`keyhole events`: a person reads snapshots as a stack with a tree of locals; --json is the raw record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

KEYHOLE = str(Path(sys.executable).parent / "keyhole")

EVENTS = [
    {
        "probe": None,
        "kind": "agent",
        "ts": "2026-11-21T10:00:00.000001Z",
        "thread": "MainThread",
        "pid": 7,
        "event": "started",
        "backend": "sys.monitoring",
    },
    {
        "probe": "snap",
        "kind": "snapshot",
        "ts": "2026-11-21T10:00:01.000001Z",
        "thread": "worker-1",
        "pid": 7,
        "frames": [
            {
                "file": "/srv/shop/orders.py",
                "line": 12,
                "function": "process_order",
                "locals": {
                    "total": 514.8,
                    "api_key": {"@redacted": "secret"},
                    "order": {
                        "@type": "shop.Order",
                        "id": 1,
                        "email": {"@redacted": "pii"},
                        "items": [["chair", 240.0], {"@more": 3}],
                    },
                },
            },
            {"file": "/srv/shop/service.py", "line": 37, "function": "worker"},
        ],
        "watch": {"order.id": 1, "len(order.items)": {"@error": "boom"}},
    },
    {
        "probe": "log",
        "kind": "log",
        "ts": "2026-11-21T10:00:02.000001Z",
        "thread": "worker-1",
        "pid": 7,
        "message": "order 1 for [redacted:pii]",
    },
    {
        "probe": "m",
        "kind": "metric",
        "ts": "2026-11-21T10:00:03.000001Z",
        "thread": "keyhole-agent",
        "pid": 7,
        "count": 3,
        "sum": 6.0,
        "min": 1.0,
        "max": 3.0,
        "p50": 2.0,
        "interval": 5.0,
    },
    {
        "probe": "bad",
        "kind": "error",
        "ts": "2026-11-21T10:00:04.000001Z",
        "thread": "keyhole-agent",
        "pid": 7,
        "error": "shop/orders.py:2 has no code; nearest lines with code: 1, 3",
    },
]


def _events_file(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in EVENTS) + "not json\n")
    return path


def _show(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KEYHOLE, "events", *args], capture_output=True, text=True, timeout=60, check=False)


def test_a_snapshot_reads_as_a_stack_with_a_tree_of_locals(tmp_path: Path) -> None:
    result = _show("--file", str(_events_file(tmp_path)))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "process_order /srv/shop/orders.py:12" in out
    assert "api_key = [redacted: secret]" in out
    assert "email = [redacted: pii]" in out
    assert "order: shop.Order" in out and "... 3 more" in out
    assert "len(order.items) = <error: boom>" in out
    assert "order 1 for [redacted:pii]" in out
    assert "count=3" in out and "p50=2" in out
    assert "has no code; nearest lines with code: 1, 3" in out
    assert "1 line(s)" in result.stderr and "were not JSON" in result.stderr


def test_json_output_and_probe_filter(tmp_path: Path) -> None:
    result = _show("--file", str(_events_file(tmp_path)), "--json", "--probe", "log")
    assert result.returncode == 0
    assert result.stdout.splitlines() == [json.dumps(EVENTS[2])]  # as written in the file


def test_events_of_an_unexpected_shape_are_shown_as_they_are(tmp_path: Path) -> None:
    odd = {"probe": "x", "kind": "installed", "locations": [1, {"a": 2}], "ts": 5}
    weird = {"probe": "y", "kind": "exception", "exception": "not an object", "frames": "nope"}
    path = tmp_path / "odd.jsonl"
    path.write_text(json.dumps(odd) + "\n" + json.dumps(weird) + "\n")
    result = _show("--file", str(path))
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert "not an object" in result.stdout
