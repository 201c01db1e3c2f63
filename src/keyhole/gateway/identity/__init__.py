"""Who engineers are: local accounts, argon2id passwords, access and refresh tokens."""
