"""ddtrace's Dynamic Instrumentation as a benchmark tool: line probes in-process, with no Datadog agent,
no backend and no remote configuration (checked against ddtrace 4.16.0; these are its private APIs).

What is changed from stock ddtrace, and why:
- the uploader is ddtrace's own (same queues, same JSON encoding on the application thread, same
  flush thread) but starts "online" and counts what it would have POSTed instead of sending it;
- its buffer-full handler only flags the buffer: the stock handler waits for the uploader thread
  while holding the queue lock the uploader needs, which deadlocks a hot log probe (seen with a fake
  agent on loopback, even at ddtrace's default log rate);
- metric probes send DogStatsD packets to a local UDP socket that nobody reads, instead of an agent;
- telemetry, tracing and the remote-configuration poller are off.
Import this module before anything imports ddtrace: ddtrace reads the environment at import.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections import Counter
from typing import Any

_SINK = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
_SINK.bind(("127.0.0.1", 0))
os.environ.setdefault("DD_DOGSTATSD_URL", f"udp://127.0.0.1:{_SINK.getsockname()[1]}")
os.environ.setdefault("DD_INSTRUMENTATION_TELEMETRY_ENABLED", "false")
os.environ.setdefault("DD_TRACE_ENABLED", "false")
os.environ.setdefault("DD_REMOTE_CONFIGURATION_ENABLED", "false")

import ddtrace  # noqa: E402
from ddtrace.debugging._config import di_config  # noqa: E402
from ddtrace.debugging._debugger import Debugger  # noqa: E402
from ddtrace.debugging._probe.remoteconfig import ProbePollerEvent, build_probe  # noqa: E402
from ddtrace.debugging._uploader import SignalUploader  # noqa: E402
from ddtrace.internal.remoteconfig.worker import remoteconfig_poller  # noqa: E402

UNLIMITED = 1e9  # ddtrace's limiter turns float("inf") into NaN
STATS: Counter[str] = Counter()


class _CountingUploader(SignalUploader):  # type: ignore[misc]
    def __init__(self, interval: float | None = None) -> None:
        super().__init__(interval)
        self._state = self._online

    def _flush_track(self, track: Any) -> None:
        data = track.queue.flush()
        if data is not None:
            STATS["signals"] += data[1]

    def _on_buffer_full(self, item: Any, encoded: Any) -> None:
        STATS["refused"] += 1
        self._flush_full = True


class _LocalDebugger(Debugger):  # type: ignore[misc]
    __uploader__ = _CountingUploader


class DDTrace:
    name = "ddtrace"
    version = ddtrace.__version__

    def __init__(self) -> None:
        self.probes: dict[str, Any] = {}
        self.debugger: Any = None

    def start(self) -> None:
        di_config.global_rate_limit = UNLIMITED  # the process-wide snapshot cap, 100/s by default
        remoteconfig_poller._enable = False  # the debugger turns remote config on; this keeps the poller off
        _LocalDebugger.enable()
        self.debugger = _LocalDebugger._instance

    def add(self, kind: str, line: int, probe_id: str) -> None:
        spec: dict[str, Any] = {
            "id": f"{probe_id}-{uuid.uuid4().hex[:6]}",
            "version": 0,
            "where": {
                "sourceFile": os.path.abspath(os.path.join(os.path.dirname(__file__), "workload.py")),
                "lines": [str(line)],
            },
        }
        if kind == "count":
            spec.update(type="METRIC_PROBE", kind="COUNT", metricName="bench.hits")
        else:
            spec.update(
                type="LOG_PROBE",
                captureSnapshot=kind == "snapshot",
                template="a={a} b={b}",
                segments=[
                    {"str": "a="},
                    {"dsl": "a", "json": {"ref": "a"}},
                    {"str": " b="},
                    {"dsl": "b", "json": {"ref": "b"}},
                ],
                sampling={"snapshotsPerSecond": 0.001 if kind == "suppressed" else UNLIMITED},
            )
        probe = build_probe(spec)
        self.debugger._on_configuration(ProbePollerEvent.NEW_PROBES, [probe])
        entry = dict.get(self.debugger._probe_registry, spec["id"])
        if entry is None or not entry.installed:
            raise RuntimeError(f"ddtrace did not install {probe_id}: {getattr(entry, 'message', None)}")
        self.probes[probe_id] = probe

    def fired(self, probe_id: str) -> int:
        return -1  # not counted per probe; the uploader's STATS show the signals produced

    def remove(self, probe_id: str) -> None:
        probe = self.probes.pop(probe_id, None)
        if probe is not None:
            self.debugger._on_configuration(ProbePollerEvent.DELETED_PROBES, [probe])

    def stop(self) -> None:
        for probe_id in list(self.probes):
            self.remove(probe_id)
        _LocalDebugger.disable()
