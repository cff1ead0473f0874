"""A fleet's rows as its other modules read and end them, and where its blobs live."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import select, update

from app.db.tables import FleetRoundRow, FleetRow, utcnow
from app.services import rows
from app.services.context import Context

ROUNDS_A_READ = 200  # rounds read from the database at a time by whole-fleet summaries


def fleet_prefix(row: FleetRow) -> str:
    """Where a fleet keeps its own blobs (plan, state, initial weights, per-client figures)."""
    return f"users/{row.user_id}/fleets/{row.id}/"


def get_row(ctx: Context, *, fleet_id: str) -> FleetRow:
    """A fleet row, or 404."""
    return rows.get(ctx, FleetRow, fleet_id, "fleet")


def rounds_of(ctx: Context, fleet_id: str, *, after: int = 0,
              limit: int | None = None) -> list[FleetRoundRow]:
    """A fleet's finished rounds after round `after`, oldest first, at most `limit`."""
    query = (select(FleetRoundRow).where(FleetRoundRow.fleet_id == fleet_id,
                                         FleetRoundRow.round > after)
             .order_by(FleetRoundRow.round))
    if limit is not None:
        query = query.limit(limit)
    with ctx.db.begin() as db:
        return list(db.scalars(query))


def each_round(ctx: Context, fleet_id: str) -> Iterator[FleetRoundRow]:
    """Every finished round, oldest first, read ROUNDS_A_READ at a time (memory stays bounded
    however many rounds a fleet ran)."""
    after = 0
    while True:
        page = rounds_of(ctx, fleet_id, after=after, limit=ROUNDS_A_READ)
        yield from page
        if len(page) < ROUNDS_A_READ:
            return
        after = page[-1].round


def set_status(ctx: Context, fleet_id: str, status: str, error: str | None) -> None:
    """A fleet that pauses (its store refuses writes) or runs again."""
    with ctx.db.begin() as db:
        db.execute(update(FleetRow).where(FleetRow.id == fleet_id,
                                          FleetRow.status.in_(("running", "paused")))
                   .values(status=status, error=error))


def stop_reason(ctx: Context, fleet_id: str, reason: str) -> None:
    """Why a fleet ends before its last round (it then succeeds with what it has)."""
    with ctx.db.begin() as db:
        db.execute(update(FleetRow).where(FleetRow.id == fleet_id).values(
            stopped_reason=reason))


def finish(ctx: Context, fleet_id: str, status: str, error: str | None = None) -> None:
    """Record a fleet's end state."""
    with ctx.db.begin() as db:
        db.execute(update(FleetRow).where(FleetRow.id == fleet_id).values(
            status=status, error=error, finished_at=utcnow()))
