"""Index per-timestep loss values and metric values in the order a sort by them reads

`runs list --sort "val_loss_t[3]"` or `--sort val_exact_match:desc --limit N` walks these in
value order and stops after N runs whose winning attempt's last epoch the row belongs to,
instead of probing every run (709 ms → see benchmarks/results/store_query.md).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Partial: a sort names a whole-split metric by `timestep IS NULL` and a per-timestep value
    # by `timestep = k`, and each row goes into one index only. PostgreSQL does not walk an
    # index on (..., timestep, value) in value order under `timestep IS NULL` (measured: 1.5 s
    # for `--sort val_exact_match:desc`); totals are sorted by the runs' summary columns.
    op.create_index(
        "ix_losses_step_value",
        "losses",
        ["split", "timestep", "value"],
        unique=False,
        sqlite_where=sa.text("timestep IS NOT NULL"),
        postgresql_where=sa.text("timestep IS NOT NULL"),
    )
    op.create_index(
        "ix_metrics_whole_value",
        "metrics",
        ["split", "name", "value"],
        unique=False,
        sqlite_where=sa.text("timestep IS NULL"),
        postgresql_where=sa.text("timestep IS NULL"),
    )
    op.create_index(
        "ix_metrics_step_value",
        "metrics",
        ["split", "name", "timestep", "value"],
        unique=False,
        sqlite_where=sa.text("timestep IS NOT NULL"),
        postgresql_where=sa.text("timestep IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_metrics_step_value", table_name="metrics")
    op.drop_index("ix_metrics_whole_value", table_name="metrics")
    op.drop_index("ix_losses_step_value", table_name="losses")
