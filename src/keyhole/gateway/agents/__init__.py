"""The agents' side: enrollment and the internal CA, instances and who is connected, waking long-polls,
event ingest, and the probe-set answers they poll for.
"""
