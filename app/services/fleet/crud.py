"""Fleets: create (every check before any write, the plan stored with the row), read with live
progress, list, cancel, delete, and resume after a restart."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import func, select

from app.db.tables import CheckpointRow, FleetClientRow, FleetRow, SessionRow, new_id
from app.errors import Conflict, TooManyRequests
from app.services import lifecycle
from app.services.context import Context
from app.services.fleet import record
from app.services.fleet import rows as fleet_rows
from app.services.fleet.build import build
from app.services.fleet.plan import thaw
from app.services.pages import Page, paginate
from app.services.progress import FleetState
from app.services.workers import ACTIVE

_ONE_AT_A_TIME = threading.Lock()  # a user's count and insert as one step (one process)


@dataclass
class FleetView:
    """A fleet as the API shows it: the row, with live progress where this process runs it."""

    id: str
    user_id: str
    status: str
    spec: dict[str, Any]
    progress: dict[str, int]
    global_checkpoint_ids: list[str]
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    last_round: dict[str, Any] | None
    stopped_reason: str | None = None


def view(row: FleetRow, state: FleetState | None) -> FleetView:
    """Merge a row with the live state of its run."""
    live = state is not None and state.status in ("running", "paused") and row.status in ACTIVE
    rounds = row.spec["rounds"]
    progress = ({"round": state.round, "rounds": rounds, "updates_done": state.updates_done,
                 "updates_in_round": state.updates_in_round} if live and state else
                {"round": row.rounds_done, "rounds": rounds, "updates_done": 0,
                 "updates_in_round": 0})
    progress["rounds_done"] = row.rounds_done
    status = state.status if live and state else row.status
    error = state.error if live and state and status == "paused" else row.error
    return FleetView(row.id, row.user_id, status, row.spec, progress,
                     list(row.global_checkpoint_ids), error, row.created_at, row.started_at,
                     row.finished_at, row.last_round, row.stopped_reason)


def create(ctx: Context, *, user_id: str, spec: dict[str, Any]) -> FleetView:
    """Check the spec against its model and datasets (422 naming the field, 404 for what
    the user cannot see), store its plan, record the fleet and queue it. A refused spec
    writes nothing; a user over FLEETLITE_MAX_FLEETS_PER_USER gets a 429."""
    _check_cap(ctx, user_id)
    plan = build(ctx, user_id=user_id, spec=spec)
    meta, blob = plan.record()
    row = FleetRow(id=new_id("flt"), user_id=user_id, status="queued", spec=thaw(plan.spec),
                   num_clients=plan.num_clients, rounds_done=0, global_checkpoint_ids=[],
                   plan=meta)
    key = record.plan_key(row)
    ctx.store.put(key, blob)  # blob first, row second
    try:
        with _ONE_AT_A_TIME:
            _check_cap(ctx, user_id)
            with ctx.db.begin() as db:
                db.add(row)
    except BaseException:
        ctx.store.delete(key)
        raise
    record.PLANS.put(row.id, plan)
    return view(row, ctx.fleets.submit(row.id))


def _check_cap(ctx: Context, user_id: str) -> None:
    cap = ctx.settings.max_fleets_per_user
    if not cap:
        return
    with ctx.db.begin() as db:
        active = db.scalar(select(func.count()).where(FleetRow.user_id == user_id,
                                                      FleetRow.status.in_(ACTIVE)))
    if active and active >= cap:
        raise TooManyRequests(f"user '{user_id}' has {active} fleets queued, running or paused "
                              f"(limit {cap}); retry when one ends", retry_after=30)


def get(ctx: Context, *, fleet_id: str) -> FleetView:
    """A fleet with live progress; a fleet running here is read from memory alone."""
    return lifecycle.read(ctx.fleets, fleet_id, view,
                          lambda: fleet_rows.get_row(ctx, fleet_id=fleet_id))


def live_view(ctx: Context, *, fleet_id: str) -> FleetView | None:
    """A fleet running in this process, from memory (no I/O); None for any other."""
    return lifecycle.live(ctx.fleets, fleet_id, view)


def get_all(ctx: Context, *, user_id: str | None, limit: int, cursor: str | None
            ) -> Page[FleetView]:
    """A user's fleets (None: everyone's), newest first."""
    query = select(FleetRow)
    if user_id is not None:
        query = query.where(FleetRow.user_id == user_id)
    with ctx.db.begin() as db:
        page = paginate(db, query, FleetRow.id, limit=limit, cursor=cursor)
    return Page([view(r, ctx.fleets.state(r.id)) for r in page.items], page.next_cursor)


def cancel(ctx: Context, *, fleet_id: str) -> FleetView:
    """The fleet ends "cancelled" after the round under way, keeping the rounds it finished."""
    row = fleet_rows.get_row(ctx, fleet_id=fleet_id)
    lifecycle.cancel(ctx, ctx.fleets, FleetRow, row)
    return get(ctx, fleet_id=fleet_id)


def delete(ctx: Context, *, fleet_id: str) -> None:
    """Delete an ended fleet with its sessions, checkpoints and blobs (409 while active)."""
    row = fleet_rows.get_row(ctx, fleet_id=fleet_id)
    if row.status in ACTIVE:
        raise Conflict(f"fleet '{fleet_id}' is {row.status}; cancel it first")
    with ctx.db.begin() as db:
        sids = list(db.scalars(select(FleetClientRow.session_id)
                               .where(FleetClientRow.fleet_id == fleet_id)))
        keys = list(db.scalars(select(CheckpointRow.blob_key)
                               .where(CheckpointRow.fleet_id == fleet_id)))
        db.execute(sql_delete(CheckpointRow).where(CheckpointRow.fleet_id == fleet_id))
        db.execute(sql_delete(FleetClientRow).where(FleetClientRow.fleet_id == fleet_id))
        for chunk in range(0, len(sids), 500):
            db.execute(sql_delete(SessionRow).where(SessionRow.id.in_(sids[chunk:chunk + 500])))
        db.delete(db.get(FleetRow, fleet_id))
    for sid in sids:
        ctx.pool.remove(sid)
    for key in [*keys, *ctx.store.keys(fleet_rows.fleet_prefix(row))]:  # rows first
        ctx.store.delete(key)
    ctx.store.prune_empty(fleet_rows.fleet_prefix(row))
    record.PLANS.drop(fleet_id)


def resume_all(ctx: Context) -> int:
    """At start: queue again every fleet a previous process left queued, running or paused."""
    return lifecycle.resume_all(ctx, FleetRow, ctx.fleets)
