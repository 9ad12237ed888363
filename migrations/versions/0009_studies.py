"""Adaptive search: a studies table, and each run's study and trial number

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("search", sa.String(length=16), nullable=False),
        sa.Column("objective", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("trials", sa.Integer(), nullable=False),
        sa.Column("parallel", sa.Integer(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("space", sa.JSON(), nullable=False),
        sa.Column("base_spec", sa.JSON(), nullable=False),
        sa.Column("queue", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("pruner", sa.String(length=16), nullable=True),
        sa.Column("prune_min_epochs", sa.Integer(), nullable=True),
        sa.Column("prune_reduction", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.experiment_id"],
            name=op.f("fk_studies_experiment_id_experiments"),
        ),
        sa.PrimaryKeyConstraint("study_id", name=op.f("pk_studies")),
        sa.UniqueConstraint("experiment_id", name=op.f("uq_studies_experiment_id")),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("study_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("trial_number", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_runs_study_id_studies"), "studies", ["study_id"], ["study_id"]
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_runs_study_id_trial_number"), ["study_id", "trial_number"]
        )


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_runs_study_id_trial_number"), type_="unique")
        batch_op.drop_constraint(batch_op.f("fk_runs_study_id_studies"), type_="foreignkey")
        batch_op.drop_column("trial_number")
        batch_op.drop_column("study_id")
    op.drop_table("studies")
