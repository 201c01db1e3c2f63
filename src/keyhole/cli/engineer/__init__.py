"""The engineers' commands: login, sessions, probes, events, just-in-time access."""
