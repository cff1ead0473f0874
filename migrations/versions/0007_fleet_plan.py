"""fleets: the frozen plan's scalars, and why a finished fleet stopped; rounds: their privacy
figures (clipping norm, epsilon) and their updates' staleness (async fleets)

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
    with op.batch_alter_table("fleet_rounds") as batch:
        batch.add_column(sa.Column("privacy", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("staleness", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("fleet_rounds") as batch:
        batch.drop_column("staleness")
        batch.drop_column("privacy")
    with op.batch_alter_table("fleets") as batch:
        batch.drop_column("stopped_reason")
        batch.drop_column("plan")
