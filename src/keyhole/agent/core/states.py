"""The states a probe moves through in its agent."""

INSTALLING = "installing"  # accepted, waiting for the agent's thread
INSTALLED = "installed"  # instrumentation is in place
PENDING = "pending"  # its code is not loaded yet; set when it is
FAILED = "error"  # cannot be set (no code at that line, ambiguous file, ...)
DISABLED = "disabled"  # stopped by a limit, expiry or error; instrumentation removed
REMOVED = "removed"  # removed by the user
STOPPED = "stopped"  # the agent stopped

SETTLED = frozenset({INSTALLED, PENDING, FAILED, DISABLED, REMOVED, STOPPED})
ACTIVE = frozenset({INSTALLING, INSTALLED, PENDING})
