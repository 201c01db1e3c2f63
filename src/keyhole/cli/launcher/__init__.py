"""The launcher: `keyhole run` and the probe file it reads."""
