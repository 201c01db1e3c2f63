"""The routes, one module per resource; `link` is the agent endpoint (mutual TLS)."""
