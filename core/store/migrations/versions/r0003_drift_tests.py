"""The drift tests: per-feature test, p-values, distance and run verdict on ``monitoring_drift``.

Rows of runs stored before (PSI alone decided) keep NULL in the new columns; their ``threshold``
was the PSI level, a new run's is the family-wise alpha of the adjusted p-values.
"""

from __future__ import annotations

# pylint: disable=invalid-name

from typing import Any

import sqlalchemy as sa
from alembic import op

# Alembic reads these module-level names as they are spelt.
revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = (
    ("rows", sa.Integer()),
    ("test", sa.String(32)),
    ("statistic", sa.Float()),
    ("p_value", sa.Float()),
    ("p_value_adjusted", sa.Float()),
    ("distance", sa.Float()),
    ("verdict", sa.String(32)),
    ("min_rows", sa.Integer()),
)


def upgrade() -> None:
    """Add the columns a ``monitoring_drift`` table lacks (all nullable)."""
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("monitoring_drift")}
    with op.batch_alter_table("monitoring_drift") as batch:
        for name, kind in COLUMNS:
            if name not in present:
                batch.add_column(sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    """Drop them."""
    with op.batch_alter_table("monitoring_drift") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
