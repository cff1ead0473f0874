"""Fleets: create (every check before any write), read with live progress, list, cancel,
delete, and resume after a restart."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete as sql_delete
from sqlalchemy import select

from app.db.tables import CheckpointRow, FleetClientRow, FleetRow, SessionRow, new_id
from app.errors import Conflict
from app.services import fleet_rows
from app.services.context import Context
from app.services.fleet_commit import fleet_prefix
from app.services.fleet_setup import FleetSetup, prepare
from app.services.pages import Page, paginate
from app.services.progress import FleetState
from app.services.workers import ACTIVE

_SETUPS: OrderedDict[str, FleetSetup] = OrderedDict()  # for reads: clients, reports
_SETUPS_LOCK = threading.Lock()
SETUPS_KEPT = 4


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


def view(row: FleetRow, state: FleetState | None) -> FleetView:
    """Merge a row with the live state of its run."""
    live = state is not None and state.status == "running" and row.status in ACTIVE
    rounds = row.spec["rounds"]
    progress = ({"round": state.round, "rounds": rounds, "updates_done": state.updates_done,
                 "updates_in_round": state.updates_in_round} if live and state else
                {"round": row.rounds_done, "rounds": rounds, "updates_done": 0,
                 "updates_in_round": 0})
    progress["rounds_done"] = row.rounds_done
    return FleetView(row.id, row.user_id, state.status if live and state else row.status,
                     row.spec, progress, list(row.global_checkpoint_ids), row.error,
                     row.created_at, row.started_at, row.finished_at, row.last_round)


def create(ctx: Context, *, user_id: str, spec: dict[str, Any]) -> FleetView:
    """Check the spec against its model and datasets (422 naming the field, 404 for what
    the user cannot see), record the fleet and queue it. A refused spec writes nothing."""
    setup = prepare(ctx, user_id=user_id, spec=dict(spec))
    row = FleetRow(id=new_id("flt"), user_id=user_id, status="queued", spec=setup.spec,
                   num_clients=len(setup.partition), rounds_done=0, global_checkpoint_ids=[])
    with ctx.db.begin() as db:
        db.add(row)
    _remember(row.id, setup)
    return view(row, ctx.fleets.submit(row.id))


def get(ctx: Context, *, fleet_id: str) -> FleetView:
    """A fleet with live progress; a fleet running here is read from memory alone."""
    found = live_view(ctx, fleet_id=fleet_id)
    return found if found is not None else view(fleet_rows.get_row(ctx, fleet_id=fleet_id),
                                                ctx.fleets.state(fleet_id))


def live_view(ctx: Context, *, fleet_id: str) -> FleetView | None:
    """A fleet running in this process, from memory (no I/O); None for any other."""
    state = ctx.fleets.state(fleet_id)
    if state is not None and state.status == "running" and state.row is not None:
        return view(state.row, state)
    return None


def get_all(ctx: Context, *, user_id: str, limit: int, cursor: str | None) -> Page[FleetView]:
    """A user's fleets, newest first."""
    with ctx.db.begin() as db:
        page = paginate(db, select(FleetRow).where(FleetRow.user_id == user_id), FleetRow.id,
                        limit=limit, cursor=cursor)
    return Page([view(r, ctx.fleets.state(r.id)) for r in page.items], page.next_cursor)


def cancel(ctx: Context, *, fleet_id: str) -> FleetView:
    """The fleet ends "cancelled" after the round under way, keeping the rounds it finished."""
    row = fleet_rows.get_row(ctx, fleet_id=fleet_id)
    if row.status in ACTIVE:
        state = ctx.fleets.state(fleet_id)
        if not ctx.fleets.cancel(fleet_id) or (state is not None and state.status == "queued"):
            fleet_rows.finish(ctx, fleet_id, "cancelled")  # waiting: it ends now
            if state is not None:
                state.touch()
    return get(ctx, fleet_id=fleet_id)


def delete(ctx: Context, *, fleet_id: str) -> None:
    """Delete a finished fleet with its sessions and checkpoints (409 while it runs)."""
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
    for key in [*keys, *ctx.store.keys(fleet_prefix(row))]:  # rows first: orphans are swept
        ctx.store.delete(key)
    with _SETUPS_LOCK:
        _SETUPS.pop(fleet_id, None)


def resume_all(ctx: Context) -> int:
    """At start: queue again every fleet a previous process left queued or running."""
    with ctx.db.begin() as db:
        ids = list(db.scalars(select(FleetRow.id).where(FleetRow.status.in_(ACTIVE))
                              .order_by(FleetRow.id)))
    for fleet_id in ids:
        ctx.fleets.submit(fleet_id)
    return len(ids)


def setup_of(ctx: Context, row: FleetRow) -> FleetSetup:
    """A fleet's setup for reads (its clients, its report), rebuilt from the spec if not
    held: the same spec gives the same setup."""
    with _SETUPS_LOCK:
        found = _SETUPS.get(row.id)
        if found is not None:
            _SETUPS.move_to_end(row.id)
            return found
    setup = prepare(ctx, user_id=row.user_id, spec=dict(row.spec))
    _remember(row.id, setup)
    return setup


def _remember(fleet_id: str, setup: FleetSetup) -> None:
    with _SETUPS_LOCK:
        _SETUPS[fleet_id] = setup
        while len(_SETUPS) > SETUPS_KEPT:
            _SETUPS.popitem(last=False)
