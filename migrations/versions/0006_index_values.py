"""Index loss and metric values by what a sort names: (split, timestep) and (split, name, timestep)

`runs list --sort "val_loss_t[3]"` or `--sort val_exact_match:desc --limit N` walks these in
value order and stops after N runs whose winning attempt's last epoch the row belongs to,
instead of probing every run (709 ms → see benchmarks/results/store_query.md).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_losses_split_timestep_value", "losses", ["split", "timestep", "value"], unique=False
    )
    op.create_index(
        "ix_metrics_split_name_timestep_value",
        "metrics",
        ["split", "name", "timestep", "value"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_metrics_split_name_timestep_value", table_name="metrics")
    op.drop_index("ix_losses_split_timestep_value", table_name="losses")
