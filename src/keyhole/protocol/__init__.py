"""The wire schema shared by the agent, the gateway and the CLI (standard library only)."""

from keyhole.protocol.errors import ExpressionError, ProtocolError, SpecError
from keyhole.protocol.probe_spec import KINDS, ProbeSpec, parse_probe_file_data

__all__ = [
    "KINDS",
    "ExpressionError",
    "ProbeSpec",
    "ProtocolError",
    "SpecError",
    "parse_probe_file_data",
]
