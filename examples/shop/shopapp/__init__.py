"""A tiny shop backend used by keyhole's demo and tests."""
