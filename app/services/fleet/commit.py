"""A fleet's round made durable: blobs first (the global checkpoint, the devices' own
checkpoints where they keep variables, the strategy's and the clock's state), then every
row of the round in one transaction. Until that commit the round does not exist, so a
fleet killed in the middle resumes from the round before, with nothing half-written. The
blobs are stored here, on the fleet's driver; the transaction (fleet_write) runs on its
commit thread while the next round trains."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import select, update

from app.db.tables import (
    CheckpointRow,
    FleetClientRow,
    FleetRow,
    SessionRow,
    new_id,
    utcnow,
)
from app.executor.update import UpdateResult
from app.federated.round_plan import RoundPlan
from app.services import rows, sessions
from app.services.context import Context
from app.services.fleet.plan import FleetPlan
from app.services.fleet.rows import fleet_prefix
from app.services.fleet.updates import session_id_for
from app.services.workers import ACTIVE
from app.store.blobs import StoreUnavailable

log = logging.getLogger("fleetlite.fleets")


@dataclass
class ClientState:
    """A device that has taken part: its session and its own last checkpoint."""

    session_id: str
    rounds_participated: int
    checkpoint_id: str | None
    checkpoint_key: str | None
    steps: int = 0  # its session's train steps so far


def drop_live_devices(ctx: Context, fleet_id: str) -> None:
    """At a fleet's end, whatever the end: forget its devices' sessions that calls loaded
    during the run (with the weights of the round they were loaded at), so that the next
    call loads each from the row and head the fleet committed last."""
    prefix = session_id_for(fleet_id, 0)[:-7]
    for live in ctx.pool.all():
        if live.id.startswith(prefix):
            live.strand.submit(sessions.drop, ctx, live, fleet_id)


def load_clients(ctx: Context, fleet_id: str) -> dict[int, ClientState]:
    """The devices of a fleet that have taken part, with their checkpoints' keys."""
    with ctx.db.begin() as db:
        found = db.execute(
            select(FleetClientRow, CheckpointRow.blob_key, SessionRow.steps)
            .outerjoin(CheckpointRow, CheckpointRow.id == FleetClientRow.checkpoint_id)
            .outerjoin(SessionRow, SessionRow.id == FleetClientRow.session_id)
            .where(FleetClientRow.fleet_id == fleet_id)).all()
    return {c.client_id: ClientState(c.session_id, c.rounds_participated, c.checkpoint_id, key,
                                     steps or 0) for c, key, steps in found}


def checkpoint_key(ctx: Context, checkpoint_id: str) -> str:
    """A checkpoint's blob key."""
    return rows.get(ctx, CheckpointRow, checkpoint_id, "checkpoint").blob_key


def put_initial(ctx: Context, row: FleetRow, initial: bytes) -> str:
    """Store the model's initial weights where the first round's updates fetch them."""
    key = fleet_prefix(row) + "initial.ckpt"
    ctx.store.put(key, initial)
    return key


def mark_started(ctx: Context, row: FleetRow) -> bool:
    """The fleet runs, unless it was cancelled meanwhile (then False, and nothing written):
    a cancel that lands while the fleet waited for a worker is never undone."""
    row.started_at = row.started_at or utcnow()
    row.status, row.error = "running", None
    with ctx.db.begin_core() as conn:
        return conn.execute(update(FleetRow).where(
            FleetRow.id == row.id, FleetRow.status.in_(ACTIVE)).values(
            status="running", error=None, started_at=row.started_at)).rowcount == 1


def load_state(ctx: Context, row: FleetRow) -> dict[str, Any]:
    """The strategy's and the clock's state after the fleet's last finished round."""
    assert row.state_key is not None
    with np.load(io.BytesIO(ctx.store.get(row.state_key)), allow_pickle=False) as npz:
        scalars = json.loads(str(npz["__scalars__"]))
        arrays = {k: npz[k] for k in npz.files if k != "__scalars__"}
    out: dict[str, Any] = {"strategy": {}, "clock": dict(scalars)}
    for key, value in arrays.items():
        part, _, name = key.partition("/")
        out[part][name] = value
    return out


def _state_blob(state: dict[str, Any]) -> bytes:
    arrays, scalars = {}, {}
    for name, value in state["strategy"].items():
        arrays[f"strategy/{name}"] = value
    for name, value in state["clock"].items():
        if isinstance(value, np.ndarray):
            arrays[f"clock/{name}"] = value
        else:
            scalars[name] = value
    buf = io.BytesIO()
    np.savez(buf, __scalars__=np.array(json.dumps(scalars)), **arrays)
    return buf.getvalue()


def checkpoint_values(row: FleetRow, data: bytes, *, kind: str, round_: int,
                      session_id: str | None, step: int = 0) -> dict[str, Any]:
    """A checkpoint row of this fleet (its blob key is made from the new id)."""
    ckpt_id = new_id("ckpt")
    return {"id": ckpt_id, "user_id": row.user_id, "model_id": row.spec["model_id"],
            "session_id": session_id, "step": step, "loss": None, "kind": kind,
            "label": f"{row.id} {kind} {round_}", "sha256": hashlib.sha256(data).hexdigest(),
            "size_bytes": len(data), "blob_key": f"users/{row.user_id}/checkpoints/{ckpt_id}.ckpt",
            "created_at": utcnow(), "fleet_id": row.id, "round": round_}


@dataclass
class StagedRound:
    """A finished round whose blobs are stored and whose rows are computed: what its
    transaction (fleet_write.write_round) writes, on the fleet's commit thread."""

    plan: RoundPlan
    results: dict[int, UpdateResult]
    global_id: str
    global_key: str
    ckpts: list[dict[str, Any]]  # the checkpoint rows: the global, then the devices' own
    owns: dict[int, dict[str, Any]]  # client: its own checkpoint's row (keeping strategies)
    new_sessions: list[dict[str, Any]]  # first-time devices: session rows, client rows
    new_clients: list[dict[str, Any]]
    moved_sessions: list[dict[str, Any]]  # devices seen before: their new figures
    moved_clients: list[dict[str, Any]]
    superseded_ids: list[str]  # own checkpoints replaced by this round's
    state_key: str
    written: list[str]  # every blob stored for this round
    timings: dict[str, float]
    started: datetime
    loss: float | None
    failures: dict[int, str]  # client: why its update failed
    privacy: dict[str, Any] | None = None  # DP-FedAvg: what the round used and epsilon so far
    staleness: dict[str, Any] | None = None  # async: the applied updates' staleness


def stage_round(ctx: Context, row: FleetRow, fplan: FleetPlan, plan: RoundPlan,
                results: dict[int, UpdateResult], global_data: bytes,
                clients: dict[int, ClientState], state: dict[str, Any],
                timings: dict[str, float], started: datetime,
                failures: dict[int, str]) -> StagedRound:
    """Store round `plan.round`'s blobs and compute its rows; `clients` moves on in memory
    (the next round's updates start from this round's own checkpoints). The round exists
    once its transaction commits; until then its blobs are unreferenced."""
    r = plan.round
    ckpts = [checkpoint_values(row, global_data, kind="global", round_=r, session_id=None)]
    owns = {}
    if fplan.keep:  # each device's own variables live on in its checkpoint
        for c, res in results.items():
            owns[c] = checkpoint_values(row, res.data, kind="update", round_=r,
                                        session_id=session_id_for(row.id, c),
                                        step=steps_after(clients, c, res))
    state_key = fleet_prefix(row) + f"state-{r}.npz"
    written = [ckpts[0]["blob_key"], *(v["blob_key"] for v in owns.values()), state_key]
    try:
        ctx.store.put(ckpts[0]["blob_key"], global_data)
        for c, values in owns.items():
            ctx.store.put(values["blob_key"], results[c].data)
        ctx.store.put(state_key, _state_blob(state))
    except BaseException:
        drop(ctx, written)
        raise
    staged = StagedRound(plan, results, ckpts[0]["id"], ckpts[0]["blob_key"],
                         [*ckpts, *owns.values()], owns, [], [], [], [],
                         [clients[c].checkpoint_id for c in owns  # type: ignore[misc]
                          if c in clients and clients[c].checkpoint_id],
                         state_key, written, timings, started, _train_loss(results),
                         failures)
    for c, res in sorted(results.items()):
        _stage_client(staged, row, fplan, c, res, clients)
    return staged


def drop(ctx: Context, keys: list[str]) -> None:
    """Delete a round's blobs: it was never committed. A store that refuses the deletes
    leaves them to the orphan sweep at the next start (the error that undid the round is
    the one that matters)."""
    for key in keys:
        try:
            ctx.store.delete(key)
        except StoreUnavailable as exc:
            log.warning("blob %s left to the orphan sweep: %s", key, exc.detail)


def _stage_client(staged: StagedRound, row: FleetRow, fplan: FleetPlan, c: int,
                  res: UpdateResult, clients: dict[int, ClientState]) -> None:
    sid = session_id_for(row.id, c)
    own = staged.owns.get(c)
    head, head_step = (own["id"], own["step"]) if own else (None, None)
    steps = steps_after(clients, c, res)
    state = clients.get(c)
    if state is None:  # its first update: the device's session and row are made now
        now = utcnow()
        staged.new_sessions.append({
            "id": sid, "user_id": row.user_id, "model_id": fplan.model.id,
            "head_checkpoint_id": head, "head_step": head_step, "steps": steps,
            "last_loss": res.loss, "created_at": now, "updated_at": now})
        staged.new_clients.append({"fleet_id": row.id, "client_id": c, "session_id": sid,
                                   "rounds_participated": 1, "checkpoint_id": head})
        state = clients[c] = ClientState(sid, 0, None, None, 0)
    else:
        staged.moved_sessions.append({"b_id": sid, "b_steps": steps, "b_loss": res.loss,
                                      "b_head": head, "b_head_step": head_step})
        staged.moved_clients.append({"b_fleet": row.id, "b_client": c,
                                     "b_rounds": state.rounds_participated + 1, "b_ckpt": head})
    state.rounds_participated, state.steps = state.rounds_participated + 1, steps
    if own:
        state.checkpoint_id, state.checkpoint_key = own["id"], own["blob_key"]


def steps_after(clients: dict[int, ClientState], c: int, res: UpdateResult) -> int:
    """Client c's session's train steps once this update is counted."""
    state = clients.get(c)
    return (state.steps if state else 0) + res.steps


def _train_loss(results: dict[int, UpdateResult]) -> float | None:
    known = [(r.loss, r.examples) for r in results.values() if r.loss is not None]
    total = sum(n for _, n in known)
    return sum(loss * n for loss, n in known) / total if total else None
