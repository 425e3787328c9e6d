"""The tables as they were before the outbox (``prediction`` without ``shipped_at``).

Databases made before the store had migrations were created table by table on first use, so each
table is created only when it is missing: upgrading such a database from nothing is safe.
"""

from __future__ import annotations

# pylint: disable=invalid-name

import sqlalchemy as sa
from alembic import op

# Alembic reads these module-level names as they are spelt.
revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _missing(name: str) -> bool:
    return not sa.inspect(op.get_bind()).has_table(name)


def upgrade() -> None:
    """Create the tables that do not exist yet."""
    if _missing("prediction"):
        op.create_table(
            "prediction",
            sa.Column("id", sa.String(36), primary_key=True),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("request_id", sa.String(64), nullable=False),
            sa.Column("model_version", sa.String(32), nullable=False),
            sa.Column("probability", sa.Float(), nullable=False),
            sa.Column("label", sa.String(3), nullable=False),
            sa.Column("threshold", sa.Float(), nullable=False),
            sa.Column("latency_ms", sa.Float(), nullable=False),
            sa.Column("features", sa.String(), nullable=False),
            sa.Column("actual", sa.String(3), nullable=True),
            sa.Column("feedback_at", sa.DateTime(timezone=True), nullable=True),
        )
        op.create_index("ix_prediction_created_at", "prediction", ["created_at"])
    if _missing("retrain_job"):
        op.create_table(
            "retrain_job",
            sa.Column("id", sa.String(36), primary_key=True),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("progress", sa.String(), nullable=False),
            sa.Column("result", sa.String(), nullable=True),
            sa.Column("error", sa.String(), nullable=True),
            sa.Column("data_path", sa.String(), nullable=True),
        )
        op.create_index("ix_retrain_job_status", "retrain_job", ["status"])
    if _missing("model_generation"):
        op.create_table(
            "model_generation",
            sa.Column("id", sa.Integer(), primary_key=True),
            sa.Column("generation", sa.Integer(), nullable=False),
            sa.Column("reason", sa.String(), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        )
    if _missing("monitoring_host"):
        op.create_table(
            "monitoring_host",
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("host", sa.String(255), nullable=False),
            sa.Column("metricset", sa.String(32), nullable=False),
            sa.Column("name", sa.String(255), nullable=True),
            sa.Column("cpu_percent", sa.Float()),
            sa.Column("memory_percent", sa.Float()),
            sa.Column("disk_percent", sa.Float()),
            sa.Column("swap_percent", sa.Float()),
            sa.Column("document", sa.Text(), nullable=False),
        )
        op.create_index("ix_monitoring_host_at", "monitoring_host", ["at"])
        op.create_index("ix_monitoring_host_metricset", "monitoring_host", ["metricset"])
    if _missing("monitoring_drift"):
        op.create_table(
            "monitoring_drift",
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("run_id", sa.String(64), nullable=False),
            sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("feature", sa.String(64), nullable=False),
            sa.Column("kind", sa.String(16), nullable=False),
            sa.Column("psi", sa.Float(), nullable=False),
            sa.Column("ks_statistic", sa.Float()),
            sa.Column("ks_pvalue", sa.Float()),
            sa.Column("drifted", sa.Boolean(), nullable=False),
            sa.Column("threshold", sa.Float(), nullable=False),
            sa.Column("reference_rows", sa.Integer(), nullable=False),
            sa.Column("current_rows", sa.Integer(), nullable=False),
            sa.Column("model_version", sa.String(32)),
            sa.Column("source", sa.String(32)),
        )
        op.create_index("ix_monitoring_drift_run_id", "monitoring_drift", ["run_id"])
        op.create_index("ix_monitoring_drift_computed_at", "monitoring_drift", ["computed_at"])
    if _missing("monitoring_quality"):
        op.create_table(
            "monitoring_quality",
            sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("count", sa.Integer(), nullable=False),
            sa.Column("accuracy", sa.Float()),
            sa.Column("precision", sa.Float()),
            sa.Column("recall", sa.Float()),
            sa.Column("f1", sa.Float()),
            sa.Column("model_version", sa.String(32)),
        )
        op.create_index("ix_monitoring_quality_at", "monitoring_quality", ["at"])


def downgrade() -> None:
    """Drop every table (the whole history goes with them)."""
    for name in (
        "monitoring_quality",
        "monitoring_drift",
        "monitoring_host",
        "model_generation",
        "retrain_job",
        "prediction",
    ):
        op.drop_table(name)
