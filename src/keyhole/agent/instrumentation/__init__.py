"""Putting probes into running code: the sys.monitoring (3.12+) and bytecode (3.11) backends, finding
code objects for a location, the line index, and modules imported later.
"""
