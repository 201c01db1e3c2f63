"""Which thread is the agent's own: probes never fire for its work."""

from __future__ import annotations


class AgentThread:
    """The agent's own thread: its work never produces events (it would feed itself).

    `busy` is True while that thread works (it may run code a probe is set on: the standard
    library, the embedding program's sink); only then does a hit pay for comparing thread idents.
    """

    ident = -1
    busy = False
