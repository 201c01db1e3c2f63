"""`keyhole run`, inside the program: start an agent from the environment the CLI prepared.

The CLI validated the probe file, wrote it as JSON into KEYHOLE_RUN_SPEC and put the bootstrap
directory (holding only a sitecustomize module) in front of PYTHONPATH. At interpreter start the
bootstrap puts the environment back exactly as the program would have seen it without keyhole (so
its own child processes are not probed), then calls start_from_spec.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

from keyhole.agent.core.agent import Agent
from keyhole.agent.errors import AgentError
from keyhole.protocol.errors import SpecError
from keyhole.protocol.events import format_timestamp
from keyhole.protocol.probe_spec import parse_probe_file_data

# Set by the CLI, read and removed by bootstrap/pythonpath/sitecustomize.py (which cannot import this module
# before it has put the environment back).
ENV_SPEC = "KEYHOLE_RUN_SPEC"
ENV_PYTHONPATH = "KEYHOLE_RUN_PYTHONPATH"  # the program's own PYTHONPATH; unset means it had none
ENV_BOOTSTRAP = "KEYHOLE_RUN_BOOTSTRAP"
_log = logging.getLogger("keyhole.agent")


def _report(out: str, message: str) -> None:
    """Write an agent error into the events file: stdout and stderr belong to the program."""
    event = {
        "probe": None,
        "kind": "error",
        "ts": format_timestamp(time.time()),
        "thread": "MainThread",
        "pid": os.getpid(),
        "error": message,
    }
    try:
        fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, (json.dumps(event) + "\n").encode())
        finally:
            os.close(fd)
    except OSError:
        pass


def _start_linked(settings: dict[str, Any]) -> Agent | None:
    from keyhole.agent.link.start import start

    try:
        agent = start(
            settings["url"],
            service=settings["service"],
            token=settings["token"],
            ca=settings["ca_pem"],
            labels=settings.get("labels") or {},
        )
    except (AgentError, OSError, KeyError, TypeError, ValueError) as exc:
        _log.warning("keyhole agent did not start: %s", exc)
        return None
    main = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c", "-m") else None
    if main and os.path.isfile(main):
        agent.watch_main(os.path.abspath(main))
    return agent


def start_from_spec(spec_json: str) -> Agent | None:
    """Start the agent with the probe file the CLI validated (as JSON)."""
    try:
        config: dict[str, Any] = json.loads(spec_json)
    except ValueError:
        return None
    if isinstance(config.get("gateway"), dict):
        return _start_linked(config["gateway"])
    out = config.get("out") or "keyhole-events.jsonl"
    try:
        probe_file = parse_probe_file_data({"probes": config["probes"], "redaction": config.get("redaction")})
        agent = Agent(out, rules=probe_file.redaction, metric_interval=float(config.get("metric_interval", 5.0)))
        agent.start()
    except (SpecError, AgentError, OSError, KeyError, TypeError, ValueError) as exc:
        _report(out, f"keyhole agent did not start: {exc}")
        return None
    main = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c", "-m") else None
    if main and os.path.isfile(main):
        agent.watch_main(os.path.abspath(main))
    for spec in probe_file.probes:
        try:
            agent.add_probe(spec, now=True)
        except AgentError as exc:
            _report(out, f"probe {spec.id}: {exc}")
    return agent
