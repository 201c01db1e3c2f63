"""The `keyhole` command."""
