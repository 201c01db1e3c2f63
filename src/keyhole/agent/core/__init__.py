"""The agent itself: its lifecycle and public API, the probe table, its own thread, the process CPU
budget, and how events leave the process.
"""
