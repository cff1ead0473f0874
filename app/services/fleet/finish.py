"""After a fleet's last round: each client's personalized model (the final global weights
with its own kept variables, then `finetune_epochs` alone), its accuracy against the global
model's on its own held-out examples, and the report, committed with the fleet's end.

Clients are personalized a page at a time: each page's checkpoints go to the store as they
come back and only their rows are kept, so memory does not grow with the population."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from sqlalchemy import update

from app.db.tables import CheckpointRow, FleetClientRow, FleetRow, SessionRow
from app.executor.update import UpdateFailure
from app.services.context import Context
from app.services.fleet import commit, record
from app.services.fleet import summary as fleet_report
from app.services.fleet.evaluate import Evaluator
from app.services.fleet.inputs import load as load_inputs
from app.services.fleet.plan import FleetPlan
from app.services.fleet.rows import fleet_prefix
from app.services.fleet.updates import session_id_for, update_for

CLIENTS_A_PAGE = 64


def personalize_and_report(ctx: Context, row: FleetRow, plan: FleetPlan, stopped: Any) -> None:
    """Personalize every client (when there is anything to personalize), measure, report."""
    final_id = row.global_checkpoint_ids[-1]
    final_key = commit.checkpoint_key(ctx, final_id)
    evaluator = Evaluator(ctx, plan, load_inputs(ctx, plan))
    acc = evaluator.round_accuracy(ctx.store.get(final_key))
    n = plan.num_clients
    acc_global = acc.per_client if acc.per_client is not None else np.full(n, np.nan)
    clients = commit.load_clients(ctx, row.id)
    trivial = not plan.keep and plan.spec["finetune_epochs"] == 0
    personal: dict[int, dict[str, Any]] = {}  # client: its personalized checkpoint's row
    written: list[str] = []
    acc_personal = acc_global.copy() if trivial else np.full(n, np.nan)
    try:
        if not trivial:
            r = plan.rounds + 1
            for first in range(0, n, CLIENTS_A_PAGE):
                updates = [update_for(plan, row.id, row.user_id,
                                      clients[c].checkpoint_key if c in clients else None, r,
                                      c, final_key, epochs=plan.spec["finetune_epochs"],
                                      evaluate=True)
                           for c in range(first, min(first + CLIENTS_A_PAGE, n))]
                for res in ctx.executor.run_updates(updates, stopped):
                    if isinstance(res, UpdateFailure):
                        continue  # no personalized model: it keeps the global one
                    c = res.client_id
                    held = int(plan.partition.num_holdout[c])
                    if res.correct is not None and held:
                        acc_personal[c] = res.correct / held
                    values = commit.checkpoint_values(
                        row, res.data, kind="personal", round_=r,
                        session_id=session_id_for(row.id, c),
                        step=commit.steps_after(clients, c, res))
                    ctx.store.put(values["blob_key"], res.data)
                    written.append(values["blob_key"])
                    personal[c] = values
        report = fleet_report.build(ctx, row, plan, acc_global, acc_personal)
        key = fleet_prefix(row) + record.CLIENTS_BLOB
        buf = io.BytesIO()
        np.savez(buf, accuracy_global=acc_global, accuracy_personal=acc_personal)
        ctx.store.put(key, buf.getvalue())
        written.append(key)
        _commit(ctx, row, plan, personal, clients, final_id, acc_global, acc_personal, report)
    except BaseException:
        commit.drop(ctx, written)
        raise


def _commit(ctx: Context, row: FleetRow, plan: FleetPlan, personal: dict[int, dict[str, Any]],
            clients: dict[int, commit.ClientState], final_id: str, acc_global: np.ndarray,
            acc_personal: np.ndarray, report: dict[str, Any]) -> None:
    with ctx.db.begin() as db:
        if personal:
            db.execute(CheckpointRow.__table__.insert(),  # type: ignore[attr-defined]
                       list(personal.values()))
        for c in sorted(set(clients) | set(personal)):
            _settle(db, row, plan, c, clients.get(c), personal.get(c), final_id, acc_global[c],
                    acc_personal[c])
        db.execute(update(FleetRow).where(FleetRow.id == row.id).values(report=report))


def _settle(db: Any, row: FleetRow, plan: FleetPlan, c: int, state: commit.ClientState | None,
            personal: dict[str, Any] | None, final_id: str, acc_g: float, acc_p: float) -> None:
    sid = session_id_for(row.id, c)
    head = personal["id"] if personal else final_id
    values = {"checkpoint_id": head, "accuracy_global": _num(acc_g),
              "accuracy_personal": _num(acc_p)}
    step = personal["step"] if personal else 0  # a session's steps are its head's
    session = {"head_checkpoint_id": head, "head_step": step, "steps": step}
    if state is None:
        db.add(SessionRow(id=sid, user_id=row.user_id, model_id=plan.model.id, **session))
        db.add(FleetClientRow(fleet_id=row.id, client_id=c, session_id=sid,
                              rounds_participated=0, **values))
        return
    db.execute(update(SessionRow).where(SessionRow.id == sid).values(**session))
    db.execute(update(FleetClientRow).where(FleetClientRow.fleet_id == row.id,
                                            FleetClientRow.client_id == c).values(**values))


def _num(value: float) -> float | None:
    return None if np.isnan(value) else float(value)
