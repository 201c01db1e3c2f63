"""CLI errors: each carries the one line the user sees and the exit code."""


class CliError(Exception):
    """A problem with what the user asked for; printed as one line, no traceback."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
