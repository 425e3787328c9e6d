"""The outbox: ``prediction.shipped_at`` and a partial index of the rows not shipped yet.

Rows already there stay unshipped, so the shipper sends them (Elasticsearch answers "already
there" for a row delivered before, never a duplicate: the document id is the prediction id).
"""

from __future__ import annotations

# pylint: disable=invalid-name

import sqlalchemy as sa
from alembic import op

# Alembic reads these module-level names as they are spelt.
revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UNSHIPPED = "shipped_at IS NULL"


def upgrade() -> None:
    """Add the column when it is missing, then the partial index."""
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("prediction")}
    if "shipped_at" not in columns:
        with op.batch_alter_table("prediction") as batch:
            batch.add_column(sa.Column("shipped_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_prediction_unshipped",
        "prediction",
        ["created_at"],
        sqlite_where=sa.text(UNSHIPPED),
        postgresql_where=sa.text(UNSHIPPED),
        if_not_exists=True,
    )


def downgrade() -> None:
    """Drop the index and the column."""
    op.drop_index("ix_prediction_unshipped", table_name="prediction")
    with op.batch_alter_table("prediction") as batch:
        batch.drop_column("shipped_at")
