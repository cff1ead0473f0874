"""sessions.head_step: the steps of the head checkpoint, so a head only moves forward

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 16:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("head_step", sa.Integer(), nullable=True))
    op.execute("UPDATE sessions SET head_step = (SELECT checkpoints.step FROM checkpoints "
               "WHERE checkpoints.id = sessions.head_checkpoint_id)")


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_column("head_step")
