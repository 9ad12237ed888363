"""Runs count the attempts a worker's shutdown gave back, which max_attempts does not count

Revision ID: 0011
Revises: 0010

Runs recorded before this revision start at 0: no earlier give-back is told from a crash.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("given_back", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("given_back")
