"""The gateway's state: the data directory's files, the signing key, the database, its models and
migrations.
"""
