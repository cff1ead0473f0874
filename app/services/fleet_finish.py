"""After a fleet's last round: each client's personalized model (the final global weights
with its own kept variables, then `finetune_epochs` alone), its accuracy against the global
model's on its own held-out examples, and the report, committed with the fleet's end."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from sqlalchemy import update

from app.db.tables import CheckpointRow, FleetClientRow, FleetRow, SessionRow
from app.runtime.client_update import UpdateResult
from app.services import fleet_commit, fleet_report
from app.services.context import Context
from app.services.fleet_eval import Evaluator
from app.services.fleet_setup import FleetSetup

CLIENTS_BLOB = "clients.npz"


def personalize_and_report(ctx: Context, row: FleetRow, setup: FleetSetup,
                           stopped: Any) -> None:
    """Personalize every client (when there is anything to personalize), measure, report."""
    from app.services.fleet_run import update_for  # the same update shape as the rounds

    final_id = row.global_checkpoint_ids[-1]
    final_key = fleet_commit.checkpoint_key(ctx, final_id)
    evaluator = Evaluator(ctx, setup)
    acc = evaluator.round_accuracy(ctx.store.get(final_key))
    n = len(setup.partition)
    acc_global = acc.per_client if acc.per_client is not None else np.full(n, np.nan)
    clients = fleet_commit.load_clients(ctx, row.id)
    trivial = not setup.keep and setup.spec["finetune_epochs"] == 0
    personal_ckpts: dict[int, dict[str, Any]] = {}
    if trivial:  # the personalized model is the global one
        acc_personal = acc_global.copy()
        results: dict[int, UpdateResult] = {}
    else:
        r = setup.spec["rounds"] + 1
        updates = [update_for(setup, row, clients, r, c, final_key,
                              epochs=setup.spec["finetune_epochs"], evaluate=True)
                   for c in range(n)]
        results = {res.client_id: res for res in ctx.executor.run_updates(updates, stopped)}
        acc_personal = np.full(n, np.nan)
        for c, res in results.items():
            held = int(setup.partition.num_holdout[c])
            if res.correct is not None and held:
                acc_personal[c] = res.correct / held
            personal_ckpts[c] = fleet_commit.checkpoint_values(
                row, res.data, kind="personal", round_=r,
                session_id=fleet_commit.session_id_for(row.id, c),
                step=fleet_commit.steps_after(clients, c, res))
    report = fleet_report.build(ctx, row, setup, acc_global, acc_personal)
    _commit(ctx, row, setup, results, personal_ckpts, clients, final_id, acc_global,
            acc_personal, report)


def _commit(ctx: Context, row: FleetRow, setup: FleetSetup, results: dict[int, UpdateResult],
            personal: dict[int, dict[str, Any]], clients: dict[int, fleet_commit.ClientState],
            final_id: str, acc_global: np.ndarray, acc_personal: np.ndarray,
            report: dict[str, Any]) -> None:
    key = fleet_commit.fleet_prefix(row) + CLIENTS_BLOB
    buf = io.BytesIO()
    np.savez(buf, accuracy_global=acc_global, accuracy_personal=acc_personal)
    written = [key, *(v["blob_key"] for v in personal.values())]
    try:
        ctx.store.put(key, buf.getvalue())
        for c, values in personal.items():
            ctx.store.put(values["blob_key"], results[c].data)
        with ctx.db.begin() as db:
            if personal:
                db.execute(CheckpointRow.__table__.insert(),  # type: ignore[attr-defined]
                           list(personal.values()))
            for c in sorted(set(clients) | set(personal)):
                _settle(db, row, setup, c, clients.get(c), personal.get(c), results.get(c),
                        final_id, acc_global[c], acc_personal[c])
            db.execute(update(FleetRow).where(FleetRow.id == row.id).values(report=report))
    except BaseException:
        for blob in written:
            ctx.store.delete(blob)
        raise


def _settle(db: Any, row: FleetRow, setup: FleetSetup, c: int,
            state: fleet_commit.ClientState | None, personal: dict[str, Any] | None,
            res: UpdateResult | None, final_id: str, acc_g: float, acc_p: float) -> None:
    sid = fleet_commit.session_id_for(row.id, c)
    head = personal["id"] if personal else final_id
    values = {"checkpoint_id": head, "accuracy_global": _num(acc_g),
              "accuracy_personal": _num(acc_p)}
    step = personal["step"] if personal else 0  # a session's steps are its head's
    session = {"head_checkpoint_id": head, "head_step": step, "steps": step}
    if state is None:
        db.add(SessionRow(id=sid, user_id=row.user_id, model_id=setup.model.id, **session))
        db.add(FleetClientRow(fleet_id=row.id, client_id=c, session_id=sid,
                              rounds_participated=0, **values))
        return
    db.execute(update(SessionRow).where(SessionRow.id == sid).values(**session))
    db.execute(update(FleetClientRow).where(FleetClientRow.fleet_id == row.id,
                                            FleetClientRow.client_id == c).values(**values))


def _num(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def per_client(ctx: Context, row: FleetRow) -> dict[str, np.ndarray] | None:
    """The per-client accuracies of a finished fleet (None before its end)."""
    if row.report is None:
        return None
    data = ctx.store.get(fleet_commit.fleet_prefix(row) + CLIENTS_BLOB)
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}
