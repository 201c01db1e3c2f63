"""Gateway errors: each carries the one line a user or operator should see."""


class GatewayError(Exception):
    """A problem the operator can fix; shown as one line, never a traceback."""


class StateExists(GatewayError):
    """`gateway init` found state it would overwrite."""


class StateMissing(GatewayError):
    """The data directory is not an initialised gateway state."""


class AuthError(GatewayError):
    """Credentials that are missing, wrong, expired or revoked."""
