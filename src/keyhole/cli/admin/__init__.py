"""The administrators' commands: the gateway itself, users, agents, the policy, the audit log."""
