"""What a fleet shows, read from its record alone: its plan, the rows its rounds wrote, the
clock state and per-client figures it stored. Nothing here reads the dataset, the model or
the catalogue, so an ended fleet reads the same after its inputs are deleted, and a read
of a 2,000-device fleet costs milliseconds."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from sqlalchemy import select, update

from app.db.tables import FleetClientRow, FleetRow
from app.errors import Conflict, NotFound
from app.federated.async_clock import AsyncClock
from app.federated.clock import FleetClock
from app.schemas.fleets import FleetSpec
from app.services.context import Context
from app.services.fleet import commit
from app.services.fleet import rows as fleet_rows
from app.services.fleet import summary as fleet_report
from app.services.fleet.build import build
from app.services.fleet.plan import PLAN_BLOB, FleetPlan, PlanCache, thaw
from app.services.pages import Page
from app.store.blobs import BlobNotFound

CLIENTS_BLOB = "clients.npz"
PLANS = PlanCache(64)
_ROUND_FIELDS = ("round", "status", "selected", "completed", "train_loss", "global_accuracy",
                 "client_accuracy", "checkpoint_id", "started_at", "finished_at",
                 "virtual_start_s", "virtual_end_s", "outcomes", "bytes_down", "bytes_up",
                 "energy_j", "timings")


def plan_key(row: FleetRow) -> str:
    """Where a fleet's plan arrays are stored."""
    return fleet_rows.fleet_prefix(row) + PLAN_BLOB


def plan_of(ctx: Context, row: FleetRow) -> FleetPlan:
    """A fleet's plan, as written when it was created (kept in memory once read)."""
    meta = row.plan
    if meta is None:  # a fleet from before plans were recorded (migration 0007)
        return PLANS.get(row.id, lambda: _legacy(ctx, row))
    return PLANS.get(row.id, lambda: FleetPlan.from_record(row.spec, meta,
                                                           ctx.store.get(plan_key(row))))


def _legacy(ctx: Context, row: FleetRow) -> FleetPlan:
    """The plan of a fleet created before plans were recorded: built once from its spec and
    its inputs (as every read did then), and recorded. Its dirichlet split keeps no minimum
    size, as then; a `shards` split of those versions (k shards, not k classes) is not
    rebuilt exactly: its clients are listed as the current split deals them."""
    spec = FleetSpec.model_validate(thaw(row.spec)).model_dump(by_alias=True)
    if spec["partition"].get("kind") == "dirichlet":
        spec["partition"].setdefault("min_partition_size", 0)
    plan = build(ctx, user_id=row.user_id, spec=spec)
    meta, blob = plan.record()
    ctx.store.put(plan_key(row), blob)
    with ctx.db.begin() as db:
        db.execute(update(FleetRow).where(FleetRow.id == row.id).values(plan=meta))
    return plan


def rounds(ctx: Context, *, fleet_id: str, limit: int, cursor: str | None
           ) -> Page[dict[str, Any]]:
    """The finished rounds after round `cursor`, oldest first (only this page is read)."""
    after = _number(cursor) or 0
    found = fleet_rows.rounds_of(ctx, fleet_id, after=after, limit=limit + 1)
    page = [round_view(r) for r in found[:limit]]
    return Page(page, str(page[-1]["round"]) if len(found) > limit else None)


def _number(cursor: str | None) -> int | None:
    """A cursor of these lists: the last round or client number seen (anything else: none,
    the list starts afresh)."""
    if cursor and cursor.isascii() and cursor.isdigit() and len(cursor) <= 9:
        return int(cursor)
    return None


def round_view(r: Any) -> dict[str, Any]:
    """A round as the API shows it, with its failed updates and why."""
    out = {c: getattr(r, c) for c in _ROUND_FIELDS}
    out["outcomes"] = {"failed": 0, **(r.outcomes or {})}
    out["failures"] = [{"client_id": u[0], "reason": u[10]} for u in r.updates
                       if len(u) > 10 and u[10] is not None]
    dp = r.privacy or {}
    out["clipping_norm"], out["epsilon"] = dp.get("clipping_norm"), dp.get("epsilon")
    out["staleness"] = r.staleness
    return out


def clients(ctx: Context, *, fleet_id: str, limit: int, cursor: str | None
            ) -> Page[dict[str, Any]]:
    """The fleet's clients by id, `limit` at a time after `cursor` (a client id)."""
    row = fleet_rows.get_row(ctx, fleet_id=fleet_id)
    seen = _number(cursor)
    start = seen + 1 if seen is not None else 0
    stop = min(start + limit, row.num_clients)
    items = _clients(ctx, row, range(start, stop))
    return Page(items, str(stop - 1) if stop < row.num_clients else None)


def client(ctx: Context, *, fleet_id: str, client_id: int) -> dict[str, Any]:
    """One client, with its updates on the virtual clock and its availability windows."""
    row = fleet_rows.get_row(ctx, fleet_id=fleet_id)
    if not 0 <= client_id < row.num_clients:
        raise NotFound(f"client {client_id} of fleet '{fleet_id}' not found")
    found = _clients(ctx, row, range(client_id, client_id + 1))[0]
    timeline = []
    end = 0.0
    for r in fleet_rows.each_round(ctx, fleet_id):
        end = max(end, r.virtual_end_s)
        for u in r.updates:
            if u[0] == client_id:
                timeline.append({"round": r.round, "start_s": u[1], "end_s": u[2],
                                 "outcome": u[4], "planned_end_s": u[3], "energy_j": u[5],
                                 "bytes_down": u[6], "bytes_up": u[7],
                                 "battery_start_pct": u[9], "battery_end_pct": u[8],
                                 "reason": u[10] if len(u) > 10 else None})
    clock = _clock(ctx, row)
    windows = clock.windows(client_id, end) if clock is not None else []
    return {**found, "timeline": timeline, "available": [[s, e] for s, e in windows]}


def _clients(ctx: Context, row: FleetRow, ids: range) -> list[dict[str, Any]]:
    plan = plan_of(ctx, row)
    with ctx.db.begin() as db:
        touched = {c.client_id: c for c in db.scalars(
            select(FleetClientRow).where(FleetClientRow.fleet_id == row.id,
                                         FleetClientRow.client_id >= ids.start,
                                         FleetClientRow.client_id < ids.stop))}
    final = per_client(ctx, row)
    clock = _clock(ctx, row)
    battery = clock.battery_at() if clock is not None else None
    names = plan.devices.names
    part, counts = plan.partition, plan.label_counts
    global_id = row.global_checkpoint_ids[-1] if row.report and row.global_checkpoint_ids \
        else None
    out = []
    for c in ids:
        got = touched.get(c)
        labels = ({str(k): int(v) for k, v in enumerate(counts[c]) if v}
                  if counts is not None else {})
        acc_g = got.accuracy_global if got else _at(final, "accuracy_global", c)
        acc_p = got.accuracy_personal if got else _at(final, "accuracy_personal", c)
        out.append({
            "client_id": c, "key": part.keys[c] if part.keys is not None else None,
            "session_id": got.session_id if got else None,
            "num_train": int(part.num_train[c]), "num_holdout": int(part.num_holdout[c]),
            "labels": labels, "rounds_participated": got.rounds_participated if got else 0,
            "accuracy_global": acc_g, "accuracy_personal": acc_p,
            "checkpoint_id": got.checkpoint_id if got else global_id,
            "faulty": c in plan.faulty, "device": names[plan.class_index[c]],
            "energy_j": float(clock.energy_j[c]) if clock is not None else 0.0,
            "battery_pct": float(battery[c]) if battery is not None else None})
    return out


def _at(final: dict[str, np.ndarray] | None, name: str, c: int) -> float | None:
    if final is None or np.isnan(final[name][c]):
        return None
    return float(final[name][c])


def _clock(ctx: Context, row: FleetRow) -> FleetClock | AsyncClock | None:
    """The clock after the fleet's last finished round (None before its first). A running
    fleet's next commit may replace the state blob the row named: read the row again."""
    for _ in range(5):
        if not row.state_key:
            return None
        try:
            state = commit.load_state(ctx, row)["clock"]
        except BlobNotFound:
            row = fleet_rows.get_row(ctx, fleet_id=row.id)
            continue
        return (AsyncClock if state.get("mode") == "async" else FleetClock).from_state(state)
    raise Conflict(f"fleet '{row.id}' moves too fast to read its clock; try again")


def per_client(ctx: Context, row: FleetRow) -> dict[str, np.ndarray] | None:
    """The per-client accuracies of a finished fleet (None before its end)."""
    if row.report is None:
        return None
    data = ctx.store.get(fleet_rows.fleet_prefix(row) + CLIENTS_BLOB)
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def report(ctx: Context, *, fleet_id: str) -> dict[str, Any]:
    """The report: stored at the fleet's end; built from the rounds so far before it."""
    row = fleet_rows.get_row(ctx, fleet_id=fleet_id)
    if row.report is not None:
        return row.report
    return fleet_report.build(ctx, row, plan_of(ctx, row), None, None)
