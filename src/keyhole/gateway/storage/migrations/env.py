"""Alembic's entry point: the gateway always hands it an open connection."""

from alembic import context

from keyhole.gateway.storage.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
