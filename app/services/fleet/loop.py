"""The round loop of one fleet, from its last committed round to its last: plan a round on the
virtual clock, run its updates on the executor, aggregate what completed, stage the round's
blobs and hand its transaction to the commit thread while the next round trains."""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from app.db.tables import FleetRow, utcnow
from app.executor.update import UpdateFailure, UpdateResult
from app.federated.clock import FleetClock
from app.runtime import ckptfile
from app.services.context import Context
from app.services.fleet import commit, private, write
from app.services.fleet import rows as fleet_rows
from app.services.fleet.evaluate import Evaluator
from app.services.fleet.inputs import load as load_inputs
from app.services.fleet.plan import FleetPlan
from app.services.fleet.private import FleetPrivacy
from app.services.fleet.updates import aggregate, split_state, state_arrays, update_for
from app.services.models import initial_weights
from app.services.privacy import RoundSample
from app.services.progress import FleetState


class Stalled(Exception):
    """No device of the fleet can ever become eligible again."""


class UpdateFailed(Exception):
    """A client update failed and the spec does not accept failures."""


def rounds(ctx: Context, state: FleetState, row: FleetRow, plan: FleetPlan
           ) -> Generator[None, None, bool]:
    """Every round not yet finished, yielding after each; False when cancelled (after the
    round under way) or stopped."""
    spec = plan.spec
    state.row = row  # the row this loop moves on, round by round: what status reads show
    strategy = plan.strategy()
    clients = commit.load_clients(ctx, row.id)
    personal: dict[str, np.ndarray] = {}
    dp = FleetPrivacy.of(spec)
    if row.rounds_done:
        saved = commit.load_state(ctx, row)
        rest, dp_arrays = private.split(saved["strategy"])
        strategy_state, personal = split_state(rest)
        strategy.load_state(strategy_state)
        if dp is not None:
            dp.load(dp_arrays)
        clock = FleetClock.from_state(saved["clock"])
        global_key = commit.checkpoint_key(ctx, row.global_checkpoint_ids[-1])
        global_data = ctx.store.get(global_key)
    else:
        clock = FleetClock.start(seed=spec["seed"], classes=plan.device_classes,
                                 class_index=plan.class_index,
                                 availability=plan.devices.availability,
                                 min_battery_pct=plan.devices.min_battery_pct)
        global_data = initial_weights(ctx, model_id=plan.model.id)
    # Running (again: a paused fleet's reason goes), unless cancelled while it waited.
    if not commit.mark_started(ctx, row):
        state.status = "cancelled"  # the row says so already
        return False
    # Running from here, as the row now says: the live state shows it with its started_at,
    # and shows it at once (a status read must not find the row running and memory not).
    state.status = "running"
    if not row.rounds_done:
        global_key = commit.put_initial(ctx, row, global_data)
    evaluator = Evaluator(ctx, plan, load_inputs(ctx, plan))

    def own(c: int) -> Mapping[str, np.ndarray] | None:
        held = clients.get(c)
        if held is None or held.checkpoint_key is None:
            return None
        return ckptfile.read(ctx.store.get(held.checkpoint_key), ctx.settings.work_path)

    # A round's transaction (and the evaluation it records) runs on this thread while the
    # next round trains; at most one is in flight, and a failed one fails the fleet.
    with ThreadPoolExecutor(1, thread_name_prefix=f"commit-{row.id}") as committer:
        writing: Future[Any] | None = None
        try:
            for r in range(row.rounds_done + 1, spec["rounds"] + 1):
                if state.cancel.is_set() or state.stop.is_set():
                    return False
                timer = Timer()
                rplan = clock.plan_round(
                    r, clients_per_round=spec["clients_per_round"], examples=plan.examples,
                    global_bytes=len(global_data), update_bytes=len(global_data),
                    model_bytes=plan.model.size_bytes, over_commit=spec["over_commit"],
                    deadline_s=spec["round_deadline_s"], min_completed=spec["min_completed"])
                if rplan.status == "stalled":
                    raise Stalled(
                        f"stalled at round {r}: no device can ever become eligible again "
                        f"(every battery at or below min_battery_pct "
                        f"{plan.devices.min_battery_pct:g} and none charging)")
                sample = RoundSample(population=rplan.eligible, picked=len(rplan.ids))
                if dp is not None and dp.over_budget(sample):
                    if r == 1:
                        raise Stalled(f"privacy budget: round 1 would already pass max_epsilon "
                                      f"{dp.spec.max_epsilon:g}; raise it or the noise")
                    fleet_rows.stop_reason(ctx, row.id, "privacy budget")
                    return True
                state.round, state.updates_done = r, 0
                state.updates_in_round = len(rplan.aggregate)
                state.touch()
                updates = [update_for(plan, row.id, row.user_id, _own_key(clients, c), r, c,
                                      global_key) for c in rplan.aggregate]
                timer.lap("plan_s")
                results: dict[int, UpdateResult] = {}
                failures: dict[int, str] = {}
                for outcome in ctx.executor.run_updates(updates, state.stop.is_set):
                    if isinstance(outcome, UpdateFailure):
                        failures[outcome.client_id] = outcome.reason
                    else:
                        results[outcome.client_id] = outcome
                    state.updates_done += 1
                    state.touch()
                timer.lap("updates_s")
                if failures and not spec["accept_failures"]:
                    c = min(failures)
                    raise UpdateFailed(f"round {r}: client {c}'s update failed: {failures[c]} "
                                       "(accept_failures is false)")
                rplan = rplan.with_failures(failures, spec["min_completed"])
                if rplan.status != "aggregated":
                    results = {}
                norm = dp.state.clipping_norm if dp is not None else None
                global_data, info = aggregate(plan, strategy, r, global_data, results, personal,
                                              own, ctx.settings.work_path, dp)
                timer.lap("aggregate_s")
                clock.apply(rplan)
                if writing is not None:
                    writing.result()
                timer.lap("wait_s")
                staged = commit.stage_round(
                    ctx, row, plan, rplan, results, global_data, clients,
                    {"strategy": {**state_arrays(strategy, personal),
                                  **(dp.state_arrays() if dp is not None else {})},
                     "clock": clock.state()},
                    timer.with_updates(results), timer.started, failures)
                if dp is not None:
                    staged.privacy = dp.record(sample, info, norm or 0.0) if info else \
                        {"clipping_norm": norm, "epsilon": None}
                timer.lap("stage_s")
                staged.timings.update(timer.laps)
                writing = committer.submit(_commit, ctx, state, row, evaluator, staged,
                                           global_data)
                global_key = staged.global_key
                yield
        finally:
            if writing is not None:  # the last finished round: committed before the end
                writing.result()
    return True


def _own_key(clients: Mapping[int, commit.ClientState], c: int) -> str | None:
    held = clients.get(c)
    return held.checkpoint_key if held else None


def _commit(ctx: Context, state: FleetState, row: FleetRow, evaluator: Evaluator,
            staged: commit.StagedRound, global_data: bytes) -> None:
    write.evaluate_and_write(ctx, row, evaluator, staged, global_data)
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
