"""The gateway: the one door between engineers and agents. It imports `keyhole.protocol` and its own
libraries, never the agent or the CLI."""
