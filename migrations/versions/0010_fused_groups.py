"""Fused groups: each run's fusion key (indexed with its status) and the group it trained in

Revision ID: 0010
Revises: 0009

Runs still queued or running get their key from their stored spec, so that they may join a
group; finished runs keep NULL (never fused), which no claim looks for.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# A frozen copy of the runs table's columns this revision reads and writes.
_runs = sa.table(
    "runs",
    sa.column("run_id", sa.Integer),
    sa.column("status", sa.String),
    sa.column("spec", sa.JSON),
    sa.column("fusion_key", sa.String),
)


def _key(spec: Any) -> str | None:
    """service/fusion_keys.py as of this revision."""
    try:
        seed = spec["seed"] if spec.get("data_seed") is None else spec["data_seed"]
        split = None if spec.get("val_data") is not None else [spec.get("val_fraction", 0.2), seed]
        rnn = spec["model"] == "rnn"
        fields = [
            spec["task"],
            [spec["data"], spec.get("val_data")]
            if spec.get("data") is not None
            else [spec["seq_len"], spec["samples"]],
            split,
            spec["model"],
            spec["cell"] if rnn else None,
            spec["hidden"],
            spec["layers"],
            None if rnn else spec["activation"],
            spec["loss"],
            spec["batch_size"],
            spec["device"],
        ]
    except (KeyError, TypeError, AttributeError):
        return None
    return hashlib.sha256(json.dumps(fields, separators=(",", ":")).encode()).hexdigest()[:16]


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fusion_key", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("group_id", sa.String(length=32), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_runs_status_fusion_key"), ["status", "fusion_key"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_runs_group_id"), ["group_id"], unique=False)
    connection = op.get_bind()
    active = connection.execute(
        sa.select(_runs.c.run_id, _runs.c.spec).where(_runs.c.status.in_(("queued", "running")))
    ).all()
    keys = [{"id": run_id, "key": _key(spec)} for run_id, spec in active]
    keys = [row for row in keys if row["key"] is not None]
    if keys:
        connection.execute(
            _runs.update()
            .where(_runs.c.run_id == sa.bindparam("id"))
            .values(fusion_key=sa.bindparam("key")),
            keys,
        )


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_group_id"))
        batch_op.drop_index(batch_op.f("ix_runs_status_fusion_key"))
        batch_op.drop_column("group_id")
        batch_op.drop_column("fusion_key")
