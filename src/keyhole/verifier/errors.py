"""The verifier's errors: each carries the one line an auditor should see."""


class VerifierError(Exception):
    """The audit log cannot be read or checked; the message says what and why."""


class Tampered(VerifierError):
    """The audit log does not verify; the message names the first bad entry or checkpoint."""
