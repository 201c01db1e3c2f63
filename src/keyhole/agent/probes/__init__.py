"""Probes as they run on the application's threads, one module per kind, with their per-probe limits."""
