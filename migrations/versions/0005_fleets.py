"""fleets: fleets, their rounds and clients; checkpoints know their fleet and round

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fleets",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("num_clients", sa.Integer(), nullable=False),
        sa.Column("rounds_done", sa.Integer(), nullable=False),
        sa.Column("global_checkpoint_ids", sa.JSON(), nullable=False),
        sa.Column("state_key", sa.String(length=300), nullable=True),
        sa.Column("report", sa.JSON(), nullable=True),
        sa.Column("last_round", sa.JSON(), nullable=True),
        sa.Column("error", sa.String(length=2000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("fleets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fleets_user_id"), ["user_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_fleets_status"), ["status"], unique=False)
    op.create_table(
        "fleet_rounds",
        sa.Column("fleet_id", sa.String(length=40), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("selected", sa.JSON(), nullable=False),
        sa.Column("completed", sa.JSON(), nullable=False),
        sa.Column("train_loss", sa.Float(), nullable=True),
        sa.Column("global_accuracy", sa.Float(), nullable=True),
        sa.Column("client_accuracy", sa.JSON(), nullable=True),
        sa.Column("checkpoint_id", sa.String(length=40), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("virtual_start_s", sa.Float(), nullable=False),
        sa.Column("virtual_end_s", sa.Float(), nullable=False),
        sa.Column("outcomes", sa.JSON(), nullable=False),
        sa.Column("bytes_down", sa.BigInteger(), nullable=False),
        sa.Column("bytes_up", sa.BigInteger(), nullable=False),
        sa.Column("energy_j", sa.Float(), nullable=False),
        sa.Column("updates", sa.JSON(), nullable=False),
        sa.Column("timings", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["fleet_id"], ["fleets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("fleet_id", "round"),
    )
    op.create_table(
        "fleet_clients",
        sa.Column("fleet_id", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.String(length=40), nullable=False),
        sa.Column("rounds_participated", sa.Integer(), nullable=False),
        sa.Column("checkpoint_id", sa.String(length=40), nullable=True),
        sa.Column("accuracy_global", sa.Float(), nullable=True),
        sa.Column("accuracy_personal", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["fleet_id"], ["fleets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("fleet_id", "client_id"),
    )
    with op.batch_alter_table("checkpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fleet_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("round", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_checkpoints_fleet_id"), ["fleet_id"], unique=False)
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.add_column(sa.Column("train_ms_per_example", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_column("train_ms_per_example")
    with op.batch_alter_table("checkpoints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_checkpoints_fleet_id"))
        batch_op.drop_column("round")
        batch_op.drop_column("fleet_id")
    op.drop_table("fleet_clients")
    op.drop_table("fleet_rounds")
    with op.batch_alter_table("fleets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fleets_status"))
        batch_op.drop_index(batch_op.f("ix_fleets_user_id"))
    op.drop_table("fleets")
