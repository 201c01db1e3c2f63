"""The instrumentation backend for this Python: sys.monitoring from 3.12, bytecode injection on 3.11."""

from __future__ import annotations

import sys

from keyhole.agent.instrumentation.backend import Backend


def make_backend() -> Backend:
    if sys.version_info >= (3, 12):
        from keyhole.agent.instrumentation.monitoring_backend import MonitoringBackend

        return MonitoringBackend()
    from keyhole.agent.instrumentation.bytecode_backend import BytecodeBackend

    return BytecodeBackend()
