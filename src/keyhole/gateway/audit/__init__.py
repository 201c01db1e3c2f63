"""The tamper-evident audit log as the gateway keeps it: appends, the stored Merkle tree, signed
checkpoints, and the webhook that announces audited actions.
"""
