"""Alembic environment: always online, on the connection :func:`core.store.engine.prepare` gives.

There is no ``alembic.ini``: the configuration is built in code, and the upgrade runs inside the
caller's transaction (SQLite and PostgreSQL both have transactional DDL).
"""

from __future__ import annotations

from alembic import context

from core.store.tables import METADATA

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=METADATA,
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=False,
)
context.run_migrations()
