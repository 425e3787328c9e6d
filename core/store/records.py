"""Small reads and writes of the predictions database: feedback and the model generation."""

from __future__ import annotations

from sqlalchemy import Engine, update
from sqlmodel import Session, select

from core.store.tables import ModelGeneration, StoredPrediction, utcnow


def set_feedback(engine: Engine, prediction_id: str, actual: str) -> StoredPrediction | None:
    """Record the true outcome (``yes``/``no``) of one prediction; None when the id is unknown."""
    with Session(engine) as session:
        result = session.exec(
            update(StoredPrediction)
            .where(StoredPrediction.id == prediction_id)  # type: ignore[arg-type]
            .values(actual=actual, feedback_at=utcnow())
        )
        session.commit()
        if not result.rowcount:
            return None
        return session.exec(
            select(StoredPrediction).where(StoredPrediction.id == prediction_id)
        ).first()


def read_generation(engine: Engine) -> int:
    """The current model generation (0 when never bumped)."""
    with Session(engine) as session:
        row = session.get(ModelGeneration, 1)
        return row.generation if row else 0


def bump_generation(engine: Engine, reason: str) -> int:
    """Bump the model generation so every API worker reloads the champion; the new value."""
    with Session(engine) as session:
        row = session.get(ModelGeneration, 1)
        if row is None:
            row = ModelGeneration(id=1, generation=0)
        row.generation += 1
        row.reason = reason[:500]
        row.updated_at = utcnow()
        session.add(row)
        session.commit()
        return row.generation
