"""Alembic revisions of the predictions database (run by :func:`core.store.engine.prepare`)."""
