"""Keep the values a sort reads for ended runs, one row per run and value, in place of
indexing every epoch's rows

Revision 0006 indexed every per-timestep loss and metric row of every epoch in value order, so
that a sort by one of them walks an index; but only the last epoch's row (or the best
epoch's) is ever read, and the index cost each epoch's write half its speed on SQLite
(benchmarks/results/store_write.md). run_values holds those rows of the ended runs alone,
written once as a run ends (service/run_values.py); runs still training are probed.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_COLUMNS = "run_id, at, split, name, timestep, attempt, epoch, value"
_ENDED = "r.status IN ('succeeded', 'failed', 'diverged', 'cancelled', 'pruned')"


def upgrade() -> None:
    op.create_table(
        "run_values",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.String(length=4), nullable=False),
        sa.Column("split", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("timestep", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name=op.f("fk_run_values_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint(
            "run_id", "at", "split", "name", "timestep", name=op.f("pk_run_values")
        ),
    )
    # The ended runs' last-epoch per-timestep losses and metrics, and best-epoch val metrics.
    op.execute(
        f"INSERT INTO run_values ({_COLUMNS}) "
        "SELECT l.run_id, 'last', l.split, 'loss', l.timestep, l.attempt, l.epoch, l.value "
        "FROM runs r JOIN losses l ON l.run_id = r.run_id AND l.attempt = r.attempt "
        f"AND l.epoch = r.epochs_done WHERE l.timestep IS NOT NULL AND {_ENDED}"
    )
    for at, epoch, only in (("last", "epochs_done", ""), ("best", "best_epoch", "val")):
        op.execute(
            f"INSERT INTO run_values ({_COLUMNS}) "
            f"SELECT m.run_id, '{at}', m.split, m.name, COALESCE(m.timestep, 0), m.attempt, "
            "m.epoch, m.value FROM runs r JOIN metrics m ON m.run_id = r.run_id "
            f"AND m.attempt = r.attempt AND m.epoch = r.{epoch} WHERE {_ENDED}"
            + (f" AND m.split = '{only}'" if only else "")
        )
    op.create_index(
        "ix_run_values_sort", "run_values", ["at", "split", "name", "timestep", "value"]
    )
    op.drop_index("ix_metrics_step_value", table_name="metrics")
    op.drop_index("ix_metrics_whole_value", table_name="metrics")
    op.drop_index("ix_losses_step_value", table_name="losses")


def downgrade() -> None:
    op.drop_index("ix_run_values_sort", table_name="run_values")
    op.drop_table("run_values")
    for name, table, columns, where in (
        ("ix_losses_step_value", "losses", ["split", "timestep", "value"], "IS NOT NULL"),
        ("ix_metrics_whole_value", "metrics", ["split", "name", "value"], "IS NULL"),
        ("ix_metrics_step_value", "metrics", ["split", "name", "timestep", "value"], "IS NOT NULL"),
    ):
        op.create_index(
            name,
            table,
            columns,
            sqlite_where=sa.text(f"timestep {where}"),
            postgresql_where=sa.text(f"timestep {where}"),
        )
