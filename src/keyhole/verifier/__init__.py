"""The audit log's verifier: the RFC 9162 Merkle tree, checkpoints as signed notes, and checking a log
against them. What an auditor runs offline; the gateway shares it. It imports the standard library,
`cryptography` and `keyhole.protocol` only, never the gateway or the CLI.
"""
