"""Each probe kind's class, by the kind's name."""

from __future__ import annotations

from collections.abc import Callable

from keyhole.agent.probes.base import Probe, Runtime
from keyhole.agent.probes.exception import ExceptionProbe
from keyhole.agent.probes.function import FunctionProbe
from keyhole.agent.probes.log import LogProbe
from keyhole.agent.probes.metric import MetricProbe
from keyhole.agent.probes.snapshot import SnapshotProbe
from keyhole.agent.probes.stacks import StacksProbe
from keyhole.protocol import events as ev
from keyhole.protocol.probe_spec import ProbeSpec

PROBE_CLASSES: dict[str, Callable[[ProbeSpec, Runtime], Probe]] = {
    ev.SNAPSHOT: SnapshotProbe,
    ev.LOG: LogProbe,
    ev.METRIC: MetricProbe,
    ev.FUNCTION: FunctionProbe,
    ev.EXCEPTION: ExceptionProbe,
    ev.STACKS: StacksProbe,
}


def make_probe(spec: ProbeSpec, runtime: Runtime) -> Probe:
    return PROBE_CLASSES[spec.kind](spec, runtime)
