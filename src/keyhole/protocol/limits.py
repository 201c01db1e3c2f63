"""Default limits (DESIGN.md, "Defaults"). The agent enforces them; a probe may lower or raise its own."""

from dataclasses import dataclass

# Per probe kind: (events per second, events in total). None means "no limit of this kind".
DEFAULT_RATE: dict[str, float | None] = {
    "snapshot": 1.0,
    "log": 100.0,
    "metric": None,
    "function": 10.0,
    "exception": 1.0,
    "stacks": None,
}
DEFAULT_MAX_HITS: dict[str, int | None] = {
    "snapshot": 10,
    "log": 1000,
    "metric": None,
    "function": 100,
    "exception": 10,
    "stacks": None,
}

DEFAULT_TTL_SECONDS = 15 * 60.0
MAX_TTL_SECONDS = 24 * 3600.0
MAX_RATE = 100_000.0
MAX_HITS_CEILING = 10_000_000

# Log lines are capped in bytes per second as well as in lines per second, and in length.
LOG_BYTES_PER_SECOND = 64 * 1024
MAX_MESSAGE = 4096

# Process-wide limits.
PROCESS_CAPTURES_PER_SECOND = 100.0
CPU_BUDGET_FRACTION = 0.01
CPU_BUDGET_WINDOW_SECONDS = 10.0

# Expression evaluation.
EXPRESSION_STEP_BUDGET = 10_000
EXPRESSION_MAX_NODES = 256
EXPRESSION_MAX_SOURCE = 2_000
EXPRESSION_ERRORS_BEFORE_DISABLE = 10

METRIC_REPORT_SECONDS = 5.0


@dataclass(frozen=True)
class CaptureLimits:
    """How much of the process one capture may copy out."""

    depth: int = 3
    items: int = 20
    string: int = 255
    fields: int = 20
    frames_with_locals: int = 3
    frames: int = 20
    snapshot_bytes: int = 32 * 1024


DEFAULT_CAPTURE = CaptureLimits()
