"""Alembic environment: the engine comes from hanet.server.database, never from an ini."""

from __future__ import annotations

from alembic import context

from hanet.server.models import Base

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=engine.dialect.name == "sqlite")  # fmt: skip
    with context.begin_transaction():
        context.run_migrations()
