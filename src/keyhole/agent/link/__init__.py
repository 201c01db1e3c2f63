"""The agent's link to the gateway: its settings, identity and key, mutual-TLS JSON client, signed
probe commands, the upload buffer, and keyhole.start().
"""
