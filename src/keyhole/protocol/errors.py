"""Errors raised while reading or validating protocol data; messages are written for the user."""


class ProtocolError(Exception):
    """Base of every error in keyhole.protocol."""


class SpecError(ProtocolError):
    """A probe specification (or probe file) does not validate."""


class ExpressionError(SpecError):
    """A condition, watch, template field or metric value is not a safe expression."""
