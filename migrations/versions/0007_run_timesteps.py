"""Keep each run's number of output timesteps T beside its summary

A filter on a per-timestep value (`val_loss_t[3] < 0.2`) first tests `timesteps >= 3`, so that
runs with fewer steps are ruled out without probing their losses: the runs of a 1→1 or N→1
task, where `--sort final_val_loss` walks past thousands of them. The sorted summary columns'
indexes carry T as their second column, so the test is made in the index, not on each run's
row (100k runs on PostgreSQL: 190 → 1 ms, benchmarks/results/store_query.md).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


SORTED = ("final_val_loss", "best_val_loss", "final_metric", "best_metric")


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("timesteps", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE runs SET timesteps = (SELECT max(losses.timestep) FROM losses "
        "WHERE losses.run_id = runs.run_id) WHERE epochs_done > 0"
    )
    for column in SORTED:
        op.drop_index(f"ix_runs_{column}", table_name="runs")
        op.create_index(f"ix_runs_{column}", "runs", [column, "timesteps"])


def downgrade() -> None:
    for column in SORTED:
        op.drop_index(f"ix_runs_{column}", table_name="runs")
        op.create_index(f"ix_runs_{column}", "runs", [column])
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("timesteps")
