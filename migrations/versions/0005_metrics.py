"""Every metric of every epoch, each run's best epoch, and the best epoch's checkpoint

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metrics",
        sa.Column(
            "metric_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("split", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("timestep", sa.Integer(), nullable=True),
        sa.Column("value", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name=op.f("fk_metrics_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("metric_id", name=op.f("pk_metrics")),
        sa.UniqueConstraint(
            "run_id",
            "attempt",
            "epoch",
            "split",
            "name",
            "timestep",
            name=op.f("uq_metrics_run_id_attempt_epoch_split_name_timestep"),
        ),
    )
    op.create_index(
        "uq_metrics_whole",
        "metrics",
        ["run_id", "attempt", "epoch", "split", "name"],
        unique=True,
        sqlite_where=sa.text("timestep IS NULL"),
        postgresql_where=sa.text("timestep IS NULL"),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("best_epoch", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("best_metric", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("best_metrics", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("final_metrics", sa.JSON(), nullable=True))
        batch_op.create_index("ix_runs_best_metric", ["best_metric"], unique=False)
    with op.batch_alter_table("checkpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("best_attempt", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("best_epoch", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("best_state", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("checkpoints", schema=None) as batch_op:
        batch_op.drop_column("best_state")
        batch_op.drop_column("best_epoch")
        batch_op.drop_column("best_attempt")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_best_metric")
        batch_op.drop_column("final_metrics")
        batch_op.drop_column("best_metrics")
        batch_op.drop_column("best_metric")
        batch_op.drop_column("best_epoch")
    op.drop_index("uq_metrics_whole", table_name="metrics")
    op.drop_table("metrics")
