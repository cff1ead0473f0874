"""fleets: the frozen plan's scalars, and why a finished fleet stopped

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 22:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("fleets") as batch:
        batch.add_column(sa.Column("plan", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("stopped_reason", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fleets") as batch:
        batch.drop_column("stopped_reason")
        batch.drop_column("plan")
