"""Index the summary columns that runs are sorted by besides final_val_loss

`runs list --sort best_val_loss|final_metric --limit N` walks these indexes and stops after N
matching runs instead of reading and sorting every run.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index("ix_runs_best_val_loss", ["best_val_loss"], unique=False)
        batch_op.create_index("ix_runs_final_metric", ["final_metric"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_final_metric")
        batch_op.drop_index("ix_runs_best_val_loss")
