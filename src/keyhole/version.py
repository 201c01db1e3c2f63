"""keyhole's version, in a module of its own: the agent, the gateway and the CLI read it without
importing the top-level package's `start()` and what it reaches."""

__version__ = "0.1.0"
