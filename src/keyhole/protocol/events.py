"""The event schema: one JSON object per event, the same in `keyhole run`'s file and on the wire.

Every event has ``probe`` (the probe id, or null for agent-wide events), ``kind``, ``ts`` (RFC 3339,
UTC), ``thread`` and ``pid``. The rest depends on the kind:

- ``snapshot``: ``frames`` ([{file, line, function, locals}], top frame first) and ``watch``;
- ``log``: ``message``;
- ``metric``: ``count``, ``interval`` and, with a value expression, ``sum``, ``min``, ``max``,
  ``p50``, ``p90``, ``p99``;
- ``function``: ``phase`` ("entry", "return" or "exception"), ``call``, and ``args``, ``return``,
  ``exception`` and ``duration_ms`` as the phase has them;
- ``exception``: ``exception`` ({type, args}) and ``frames`` (innermost first);
- ``stacks``: ``threads`` and ``tasks``;
- status kinds: ``installed`` (``locations``), ``pending`` (``reason``), ``error`` (``error``),
  ``disabled`` (``reason``), ``removed``, ``stats`` (counters), ``dropped`` (``count``),
  ``agent`` (``event``: started/stopped, and details).
"""

from __future__ import annotations

import time

SNAPSHOT = "snapshot"
LOG = "log"
METRIC = "metric"
FUNCTION = "function"
EXCEPTION = "exception"
STACKS = "stacks"

INSTALLED = "installed"
PENDING = "pending"
ERROR = "error"
DISABLED = "disabled"
REMOVED = "removed"
STATS = "stats"
DROPPED = "dropped"
AGENT = "agent"

DATA_KINDS = frozenset({SNAPSHOT, LOG, METRIC, FUNCTION, EXCEPTION, STACKS})
STATUS_KINDS = frozenset({INSTALLED, PENDING, ERROR, DISABLED, REMOVED, STATS, DROPPED, AGENT})


_last_second: list[tuple[int, str]] = [(-1, "")]


def format_timestamp(epoch_seconds: float) -> str:
    """RFC 3339 in UTC with microseconds, e.g. 2026-11-21T10:00:00.123456Z."""
    whole = int(epoch_seconds)
    micros = round((epoch_seconds - whole) * 1_000_000)
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    second, prefix = _last_second[0]
    if second != whole:  # events come in bursts within the same second: format the date part once
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _last_second[0] = (whole, prefix)
    return f"{prefix}.{micros:06d}Z"
