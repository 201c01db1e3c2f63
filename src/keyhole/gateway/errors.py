"""Gateway errors: each carries the one line a user or operator should see."""


class GatewayError(Exception):
    """A problem the operator can fix; shown as one line, never a traceback."""


class StateExists(GatewayError):
    """`gateway init` found state it would overwrite."""


class StateMissing(GatewayError):
    """The data directory is not an initialised gateway state."""


class AuthError(GatewayError):
    """Credentials that are missing, wrong, expired or revoked."""


class ApiError(GatewayError):
    """A request refused with this HTTP status; the message is the one line the caller sees."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Forbidden(ApiError):
    """A 403: the caller is known and may not do this. Every one is recorded in the audit log (see
    `api.error_answers.install_error_handlers`), named by `action` or else by the route."""

    def __init__(self, message: str, action: str | None = None) -> None:
        super().__init__(403, message)
        self.action = action
