"""A fleet's rows as its other modules read and end them."""

from __future__ import annotations

from sqlalchemy import select, update

from app.db.tables import FleetRoundRow, FleetRow, utcnow
from app.services import rows
from app.services.context import Context


def get_row(ctx: Context, *, fleet_id: str) -> FleetRow:
    """A fleet row, or 404."""
    return rows.get(ctx, FleetRow, fleet_id, "fleet")


def rounds_of(ctx: Context, fleet_id: str) -> list[FleetRoundRow]:
    """A fleet's finished rounds, oldest first."""
    with ctx.db.begin() as db:
        return list(db.scalars(select(FleetRoundRow).where(FleetRoundRow.fleet_id == fleet_id)
                               .order_by(FleetRoundRow.round)))


def finish(ctx: Context, fleet_id: str, status: str, error: str | None = None) -> None:
    """Record a fleet's end state."""
    with ctx.db.begin() as db:
        db.execute(update(FleetRow).where(FleetRow.id == fleet_id).values(
            status=status, error=error, finished_at=utcnow()))
