"""Alembic environment: runs migrations on the engine handed over by hcpjourney.app.db."""

from __future__ import annotations

from alembic import context

from hcpjourney.app.db import metadata

engine = context.config.attributes["connection_engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=metadata)
    context.run_migrations()
