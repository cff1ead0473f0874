"""A staged round's transaction: every row of the round at once (Core statements, several
rows each), on the fleet's commit thread while the next round trains. Until it commits
the round does not exist, so a fleet killed meanwhile resumes from the round before."""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update

from app.db.tables import CheckpointRow, FleetClientRow, FleetRoundRow, FleetRow, SessionRow, utcnow
from app.federated.round_plan import RoundPlan
from app.services import sessions
from app.services.context import Context
from app.services.fleet.commit import StagedRound, drop
from app.services.fleet.evaluate import Evaluator, RoundAccuracy
from app.services.fleet.updates import session_id_for

log = logging.getLogger("fleetlite.fleets")
_SESSION_FIGURES = update(SessionRow).where(SessionRow.id == bindparam("b_id")).values(
    steps=bindparam("b_steps"), last_loss=bindparam("b_loss"))
_SESSION_HEAD = update(SessionRow).where(SessionRow.id == bindparam("b_id")).values(
    steps=bindparam("b_steps"), last_loss=bindparam("b_loss"),
    head_checkpoint_id=bindparam("b_head"), head_step=bindparam("b_head_step"))
_CLIENT_FIGURES = update(FleetClientRow).where(
    FleetClientRow.fleet_id == bindparam("b_fleet"),
    FleetClientRow.client_id == bindparam("b_client")).values(
    rounds_participated=bindparam("b_rounds"))
_CLIENT_HEAD = update(FleetClientRow).where(
    FleetClientRow.fleet_id == bindparam("b_fleet"),
    FleetClientRow.client_id == bindparam("b_client")).values(
    rounds_participated=bindparam("b_rounds"), checkpoint_id=bindparam("b_ckpt"))


def evaluate_and_write(ctx: Context, row: FleetRow, evaluator: Evaluator,
                       staged: StagedRound, global_data: bytes) -> RoundAccuracy:
    """Measure the round's global model, then commit the round; `row` moves on in memory
    once it has. A failed commit deletes the round's blobs."""
    try:
        t0 = time.perf_counter()
        acc = evaluator.round_accuracy(global_data)
        staged.timings["evaluate_s"] = time.perf_counter() - t0
        superseded = _write(ctx, row, staged, acc)
    except BaseException:
        drop(ctx, staged.written)
        raise
    try:
        drop(ctx, superseded)  # rows gone with the commit: blobs second
    except Exception as exc:  # the orphan sweep at start takes what is left
        log.warning("fleet %s round %d: superseded blobs kept for the sweep: %s", row.id,
                    staged.plan.round, exc)
    for c in staged.owns:
        live = ctx.pool.get(session_id_for(row.id, c))
        if live is not None:  # loaded by a call meanwhile: its next loads the new head
            live.strand.submit(sessions.drop, ctx, live, row.id)
    return acc


def _write(ctx: Context, row: FleetRow, staged: StagedRound, acc: RoundAccuracy) -> list[str]:
    plan, r = staged.plan, staged.plan.round
    superseded = [row.state_key] if row.state_key else []
    last = {"round": r, "train_loss": staged.loss, "global_accuracy": acc.global_accuracy,
            "client_accuracy_mean": (acc.client_quantiles or {}).get("mean"),
            "virtual_end_s": plan.virtual_end_s}
    global_ids = [*row.global_checkpoint_ids, staged.global_id]
    with ctx.db.begin_core() as conn:
        conn.execute(insert(CheckpointRow), staged.ckpts)
        conn.execute(insert(FleetRoundRow), [{
            "fleet_id": row.id, "round": r, "status": plan.status,
            "selected": [int(c) for c in plan.ids],
            "completed": [int(c) for c in plan.completed], "train_loss": staged.loss,
            "global_accuracy": acc.global_accuracy, "client_accuracy": acc.client_quantiles,
            "checkpoint_id": staged.global_id, "started_at": staged.started,
            "finished_at": utcnow(), "virtual_start_s": plan.virtual_start_s,
            "virtual_end_s": plan.virtual_end_s, "outcomes": plan.outcomes, **plan.totals,
            "updates": _updates(plan, staged.failures), "privacy": staged.privacy,
            "staleness": staged.staleness,
            "timings": {k: round(v, 6) for k, v in staged.timings.items()}}])
        _rows(conn, insert(SessionRow), staged.new_sessions)
        _rows(conn, insert(FleetClientRow), staged.new_clients)
        _rows(conn, _SESSION_HEAD, [m for m in staged.moved_sessions if m["b_head"]])
        _rows(conn, _SESSION_FIGURES, [m for m in staged.moved_sessions if not m["b_head"]])
        _rows(conn, _CLIENT_HEAD, [m for m in staged.moved_clients if m["b_ckpt"]])
        _rows(conn, _CLIENT_FIGURES, [m for m in staged.moved_clients if not m["b_ckpt"]])
        if staged.superseded_ids:
            old = CheckpointRow.id.in_(staged.superseded_ids)
            superseded += list(conn.scalars(select(CheckpointRow.blob_key).where(old)))
            conn.execute(delete(CheckpointRow).where(old))
        conn.execute(update(FleetRow).where(FleetRow.id == row.id).values(
            rounds_done=r, global_checkpoint_ids=global_ids, state_key=staged.state_key,
            last_round=last))
    row.rounds_done, row.state_key, row.last_round = r, staged.state_key, last
    row.global_checkpoint_ids = global_ids
    return superseded


def _rows(conn: Any, statement: Any, rows: list[dict[str, Any]]) -> None:
    if rows:  # executemany: one round trip for all of them
        conn.execute(statement, rows)


def _updates(plan: RoundPlan, failures: dict[int, str]) -> list[list[Any]]:
    """Per selected client: id, start, end, planned end, outcome, energy, bytes down and up,
    battery at its end and at the round's start, and why it failed (None unless it did)."""
    return [[u.client_id, u.start_s, u.end_s, u.planned_end_s, u.outcome, u.energy_j,
             u.bytes_down, u.bytes_up, u.battery_pct, float(plan.settled_pct[u.client_id]),
             failures.get(u.client_id)]
            for u in plan.updates()]
