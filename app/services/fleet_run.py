"""Running a fleet: rounds on the virtual clock, client updates on the executor, the
strategy's aggregation, evaluation, and each round committed (blobs first, then rows in one
transaction), so a fleet stopped or killed resumes from its last finished round and ends
bit-identical to an uninterrupted one."""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from app.db.tables import FleetRow, utcnow
from app.federated.clock import FleetClock
from app.federated.faults import corrupt
from app.federated.round_plan import RoundPlan
from app.runtime import ckptfile
from app.runtime.client_update import ClientUpdate, Interrupted, UpdateResult
from app.runtime.runner import Plan
from app.services import fleet_commit, fleet_finish, fleet_rows, fleet_write
from app.services.context import Context
from app.services.fleet_eval import Evaluator
from app.services.fleet_setup import FleetSetup, prepare
from app.services.progress import FleetState
from app.services.workers import ACTIVE, Workers

log = logging.getLogger("fleetlite.fleets")


def fleet_workers(ctx: Context, workers: int) -> Workers[FleetState]:
    """The threads that drive fleets, one fleet each (a fleet uses every core itself)."""
    return Workers("fleet", workers, FleetState, lambda state: run(ctx, state))


def run(ctx: Context, state: FleetState) -> None:
    """Run one fleet to an end state, or until the process stops (then it resumes at start
    from its last finished round)."""
    row = fleet_rows.get_row(ctx, fleet_id=state.fleet_id)
    state.row, state.rounds, state.round = row, row.spec["rounds"], row.rounds_done
    if row.status not in ACTIVE:
        state.status = row.status
        return
    if state.cancel.is_set():
        return _end(ctx, state, "cancelled")
    try:
        setup = prepare(ctx, user_id=row.user_id, spec=dict(row.spec))
        if _rounds(ctx, state, row, setup):
            fleet_finish.personalize_and_report(ctx, row, setup, state.stop.is_set)
            _end(ctx, state, "succeeded")
        elif state.status == "running" and not state.stop.is_set():
            _end(ctx, state, "cancelled")
    except Interrupted:
        pass  # stopping at shutdown: the round under way is dropped; it resumes at start
    except Exception as exc:  # a fleet's failure is recorded, never raised into the worker
        log.exception("fleet %s failed", row.id)
        _end(ctx, state, "failed", f"{type(exc).__name__}: {getattr(exc, 'detail', exc)}")
    finally:
        state.touch()


def _end(ctx: Context, state: FleetState, status: str, error: str | None = None) -> None:
    state.status, state.error = status, error
    fleet_commit.drop_live_devices(ctx, state.fleet_id)  # next, from the heads it committed
    fleet_rows.finish(ctx, state.fleet_id, status, error)
    state.touch()


def _rounds(ctx: Context, state: FleetState, row: FleetRow, setup: FleetSetup) -> bool:
    """Every round not yet finished; False when cancelled (after the round under way) or
    stopped."""
    spec = setup.spec
    strategy = setup.strategy()
    clients = fleet_commit.load_clients(ctx, row.id)
    if row.rounds_done:
        saved = fleet_commit.load_state(ctx, row)
        strategy.load_state(saved["strategy"])
        clock = FleetClock.from_state(saved["clock"])
        global_key = fleet_commit.checkpoint_key(ctx, row.global_checkpoint_ids[-1])
        global_data = ctx.store.get(global_key)
    else:
        clock = FleetClock.start(seed=spec["seed"], classes=setup.device_classes,
                                 class_index=setup.devices.draw(len(setup.partition),
                                                                spec["seed"]),
                                 availability=setup.devices.availability,
                                 min_battery_pct=setup.devices.min_battery_pct)
        global_data = setup.initial
        if not fleet_commit.mark_started(ctx, row):
            state.status = "cancelled"  # cancelled while it waited: the row says so already
            return False
    # Running from here, as the row now says: the live state shows it with its started_at,
    # and shows it at once (a status read must not find the row running and memory not).
    state.status = "running"
    if not row.rounds_done:
        global_key = fleet_commit.put_initial(ctx, row, setup.initial)
    evaluator = Evaluator(ctx, setup)
    # A round's transaction (and the evaluation it records) runs on this thread while the
    # next round trains; at most one is in flight, and a failed one fails the fleet.
    with ThreadPoolExecutor(1, thread_name_prefix=f"commit-{row.id}") as committer:
        writing: Future[Any] | None = None
        try:
            for r in range(row.rounds_done + 1, spec["rounds"] + 1):
                if state.cancel.is_set() or state.stop.is_set():
                    return False
                timer = Timer()
                plan = clock.plan_round(
                    r, clients_per_round=spec["clients_per_round"], examples=setup.examples,
                    global_bytes=len(global_data), update_bytes=len(global_data),
                    model_bytes=setup.model_bytes, over_commit=spec["over_commit"],
                    deadline_s=spec["round_deadline_s"], min_completed=spec["min_completed"])
                if plan.status == "stalled":
                    raise RuntimeError(
                        f"round {r}: no device can ever become eligible (every battery "
                        "below min_battery_pct and none charging)")
                state.round, state.updates_done = r, 0
                state.updates_in_round = len(plan.aggregate)
                state.touch()
                updates = [update_for(setup, row, clients, r, c, global_key)
                           for c in plan.aggregate]
                timer.lap("plan_s")
                results: dict[int, UpdateResult] = {}
                for result in ctx.executor.run_updates(updates, state.stop.is_set):
                    results[result.client_id] = result
                    state.updates_done += 1
                    state.touch()
                timer.lap("updates_s")
                global_data = aggregate(setup, strategy, r, global_data, results,
                                        ctx.settings.work_path)
                timer.lap("aggregate_s")
                clock.apply(plan)
                if writing is not None:
                    writing.result()
                timer.lap("wait_s")
                staged = fleet_commit.stage_round(
                    ctx, row, setup, plan, results, global_data, clients,
                    {"strategy": strategy.state(), "clock": clock.state()},
                    timer.with_updates(results), timer.started)
                timer.lap("stage_s")
                staged.timings.update(timer.laps)
                writing = committer.submit(_commit, ctx, state, row, evaluator, staged,
                                           global_data)
                global_key = staged.global_key
        finally:
            if writing is not None:  # the last finished round: committed before the end
                writing.result()
    return True


def _commit(ctx: Context, state: FleetState, row: FleetRow, evaluator: Evaluator,
            staged: fleet_commit.StagedRound, global_data: bytes) -> None:
    fleet_write.evaluate_and_write(ctx, row, evaluator, staged, global_data)
    state.touch()


class Timer:
    """Wall seconds of a round's phases, and the updates' own (summed over threads)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()
        self.started = utcnow()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name], self._last = now - self._last, now

    def with_updates(self, results: dict[int, UpdateResult]) -> dict[str, float]:
        """The phases so far, and per update phase the sum over updates."""
        sums: dict[str, float] = {}
        for res in results.values():
            for k, v in res.timings.items():
                sums[f"updates_{k}"] = sums.get(f"updates_{k}", 0.0) + v
        return {**self.laps, **sums}


def update_for(setup: FleetSetup, row: FleetRow, clients: dict[int, fleet_commit.ClientState],
               r: int, c: int, start_key: str, *, epochs: int | None = None,
               evaluate: bool = False) -> ClientUpdate:
    """Client c's update in round r (or its fine-tuning: r = rounds + 1, `epochs`)."""
    spec, part = setup.spec, setup.partition[c]
    own = clients.get(c)
    flip = (setup.faults is not None and setup.faults.kind == "label_flip"
            and c in setup.faulty)
    return ClientUpdate(
        fleet_id=row.id, round=r, client_id=c,
        session_id=fleet_commit.session_id_for(row.id, c),
        user_id=row.user_id, model_id=setup.model.id, model_key=setup.model_key,
        dataset_key=setup.dataset_key, indices=part.train, start_key=start_key,
        own_key=own.checkpoint_key if own and setup.keep else None, keep=setup.keep,
        plan=Plan(epochs=spec["local_epochs"] if epochs is None else epochs,
                  batch_size=spec["batch_size"], shuffle=spec["shuffle"],
                  seed=(spec["seed"], r, c), fixed_batch=_fixed(setup)),
        train_inputs=tuple(setup.model.signatures["train"].inputs),
        flip_label=setup.label if flip else None, num_classes=setup.num_classes,
        eval_indices=part.holdout if evaluate else None, label=setup.label,
        output=setup.output, infer_inputs=setup.infer_inputs)


def _fixed(setup: FleetSetup) -> bool:
    dims = {t.shape[0] for t in setup.model.signatures["train"].inputs.values() if t.shape}
    return bool(dims) and -1 not in dims


def aggregate(setup: FleetSetup, strategy: Any, r: int, global_data: bytes,
              results: dict[int, UpdateResult], scratch: Path) -> bytes:
    """The new global checkpoint: the strategy over the completed updates sorted by client
    id (faulty ones corrupted as the spec says), personal variables left as they were."""
    if not results:  # an abandoned round: the global stays
        return global_data
    current = ckptfile.read(global_data, scratch)
    shared = setup.shared
    base = {v: current[v] for v in shared}
    inputs = []
    for c in sorted(results):
        got = {v: results[c].arrays[v] for v in shared}
        if setup.faults is not None and c in setup.faulty and setup.faults.kind != "label_flip":
            got = corrupt(setup.faults.kind, got, base, scale=setup.faults.scale,
                          seed=setup.spec["seed"], server_round=r, client_id=c)
        inputs.append((got, results[c].examples))
    new = strategy.aggregate(r, base, inputs)
    merged = {v: np.asarray(new[v], dtype=current[v].dtype) if v in new else current[v]
              for v in current}
    return ckptfile.write(merged, scratch)


def plan_summary(plan: RoundPlan) -> dict[str, Any]:
    """A round's clock figures as the Round shows them."""
    return {"virtual_start_s": plan.virtual_start_s, "virtual_end_s": plan.virtual_end_s,
            "outcomes": plan.outcomes, **plan.totals}
