"""What a fleet shows: its rounds, its clients (rows for the devices that took part, the
partition for the others), one client's timeline and windows, and its report."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select

from app.db.tables import FleetClientRow, FleetRow
from app.errors import NotFound
from app.federated.clock import FleetClock
from app.services import fleet_commit, fleet_finish, fleet_report, fleet_rows, fleets
from app.services.context import Context
from app.services.pages import Page


def rounds(ctx: Context, *, fleet_id: str, limit: int, cursor: str | None
           ) -> Page[dict[str, Any]]:
    """The finished rounds after round `cursor`, oldest first."""
    after = int(cursor) if cursor and cursor.isdigit() else 0
    found = [r for r in fleet_rows.rounds_of(ctx, fleet_id) if r.round > after]
    page = [{c: getattr(r, c) for c in _ROUND_FIELDS} for r in found[:limit]]
    return Page(page, str(page[-1]["round"]) if len(found) > limit else None)


_ROUND_FIELDS = ("round", "status", "selected", "completed", "train_loss", "global_accuracy",
                 "client_accuracy", "checkpoint_id", "started_at", "finished_at",
                 "virtual_start_s", "virtual_end_s", "outcomes", "bytes_down", "bytes_up",
                 "energy_j", "timings")


def clients(ctx: Context, *, fleet_id: str, limit: int, cursor: str | None
            ) -> Page[dict[str, Any]]:
    """The fleet's clients by id, `limit` at a time after `cursor` (a client id)."""
    row = fleet_rows.get_row(ctx, fleet_id=fleet_id)
    start = int(cursor) + 1 if cursor and cursor.isdigit() else 0
    stop = min(start + limit, row.num_clients)
    ids = range(start, stop)
    items = _clients(ctx, row, ids)
    return Page(items, str(stop - 1) if stop < row.num_clients else None)


def client(ctx: Context, *, fleet_id: str, client_id: int) -> dict[str, Any]:
    """One client, with its updates on the virtual clock and its availability windows."""
    row = fleet_rows.get_row(ctx, fleet_id=fleet_id)
    if not 0 <= client_id < row.num_clients:
        raise NotFound(f"client {client_id} of fleet '{fleet_id}' not found")
    found = _clients(ctx, row, range(client_id, client_id + 1))[0]
    timeline = []
    end = 0.0
    for r in fleet_rows.rounds_of(ctx, fleet_id):
        end = max(end, r.virtual_end_s)
        for u in r.updates:
            if u[0] == client_id:
                timeline.append({"round": r.round, "start_s": u[1], "end_s": u[2],
                                 "outcome": u[4], "planned_end_s": u[3], "energy_j": u[5],
                                 "bytes_down": u[6], "bytes_up": u[7],
                                 "battery_start_pct": u[9], "battery_end_pct": u[8]})
    clock = _clock(ctx, row)
    windows = clock.windows(client_id, end) if clock is not None else []
    return {**found, "timeline": timeline, "available": [[s, e] for s, e in windows]}


def _clients(ctx: Context, row: FleetRow, ids: range) -> list[dict[str, Any]]:
    setup = fleets.setup_of(ctx, row)
    with ctx.db.begin() as db:
        touched = {c.client_id: c for c in db.scalars(
            select(FleetClientRow).where(FleetClientRow.fleet_id == row.id,
                                         FleetClientRow.client_id >= ids.start,
                                         FleetClientRow.client_id < ids.stop))}
    final = fleet_finish.per_client(ctx, row)
    clock = _clock(ctx, row)
    battery = clock.battery_at() if clock is not None else None
    names = setup.devices.names
    index = setup.devices.draw(len(setup.partition), setup.spec["seed"])
    out = []
    for c in ids:
        part, got = setup.partition[c], touched.get(c)
        labels: dict[str, int] = {}
        if setup.classes is not None:
            mine = setup.classes[np.concatenate([part.train, part.holdout])]
            values, counts = np.unique(mine, return_counts=True)
            labels = {str(int(v)): int(n) for v, n in zip(values, counts, strict=True)}
        acc_g = got.accuracy_global if got else _at(final, "accuracy_global", c)
        acc_p = got.accuracy_personal if got else _at(final, "accuracy_personal", c)
        global_id = row.global_checkpoint_ids[-1] if row.report and row.global_checkpoint_ids \
            else None
        out.append({
            "client_id": c, "key": part.key, "session_id": got.session_id if got else None,
            "num_train": int(part.train.size), "num_holdout": int(part.holdout.size),
            "labels": labels, "rounds_participated": got.rounds_participated if got else 0,
            "accuracy_global": acc_g, "accuracy_personal": acc_p,
            "checkpoint_id": got.checkpoint_id if got else global_id,
            "faulty": c in setup.faulty, "device": names[index[c]],
            "energy_j": float(clock.energy_j[c]) if clock is not None else 0.0,
            "battery_pct": float(battery[c]) if battery is not None else None})
    return out


def _at(final: dict[str, np.ndarray] | None, name: str, c: int) -> float | None:
    if final is None or np.isnan(final[name][c]):
        return None
    return float(final[name][c])


def _clock(ctx: Context, row: FleetRow) -> FleetClock | None:
    """The clock after the fleet's last finished round (None before its first)."""
    if not row.state_key:
        return None
    return FleetClock.from_state(fleet_commit.load_state(ctx, row)["clock"])


def report(ctx: Context, *, fleet_id: str) -> dict[str, Any]:
    """The report: stored at the fleet's end; built from the rounds so far before it."""
    row = fleet_rows.get_row(ctx, fleet_id=fleet_id)
    if row.report is not None:
        return row.report
    return fleet_report.build(ctx, row, fleets.setup_of(ctx, row), None, None)
