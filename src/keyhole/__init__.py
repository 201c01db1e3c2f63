"""keyhole: secure debugging of live Python services.

This top-level package stays import-light: the agent runs inside customer processes and must not
pull in the CLI's or the gateway's dependencies.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
