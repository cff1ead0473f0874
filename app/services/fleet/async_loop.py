"""The loop of an asynchronous fleet (mode "async"): one Round per server update.

The clock (app/federated/async_clock.py) plans up to the next server update; every device
that starts meanwhile trains on the executor from the version it starts from (the current
global: starts in a plan all start from version - 1), seeded by its start's index; the
plan's arrivals go through the server rule (FedBuff or FedAsync, app/federated/async_rules)
in event order; the update is staged and committed as a sync round is (commit.stage_round,
write.evaluate_and_write), with the rule's buffer and the clock's state in its state blob.
Updates still running after a server update are trained again on resume from their start
version's global checkpoint (kept by every Round), so a resumed fleet ends bit-identical.

A plan's starts train in waves, each client at most once per wave and in start order, so
that a device that arrives and starts again within one plan (possible with FedBuff) starts
its second update from its first's own variables (`personal`), whatever the threads.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np

from app.db.tables import FleetRow
from app.executor.update import UpdateFailure, UpdateResult
from app.federated.async_clock import AsyncClock
from app.federated.async_plan import AsyncPlan, Ended, Start
from app.federated.async_rules import FedBuff, make_rule, server_update
from app.federated.faults import corrupt
from app.federated.round_plan import RoundPlan
from app.runtime import ckptfile
from app.services.context import Context
from app.services.fleet import async_round, commit
from app.services.fleet.evaluate import Evaluator
from app.services.fleet.inputs import load as load_inputs
from app.services.fleet.loop import Stalled, Timer, UpdateFailed, _commit
from app.services.fleet.plan import FleetPlan
from app.services.fleet.rows import fleet_prefix
from app.services.fleet.updates import PERSONAL, check_finite, personal_mean, update_for
from app.services.models import initial_weights
from app.services.progress import FleetState

RULE = "rule"  # the state blob's slot for FedBuff's buffer


def rounds(ctx: Context, state: FleetState, row: FleetRow, plan: FleetPlan
           ) -> Generator[None, None, bool]:
    """Every server update not yet finished, yielding after each; False when cancelled
    (after the update under way) or stopped."""
    spec = plan.spec
    state.row = row
    run = _Run(ctx, row, plan)
    if row.rounds_done:
        saved = commit.load_state(ctx, row)
        run.load(saved["strategy"])
        clock = AsyncClock.from_state(saved["clock"])
        run.version_keys[clock.version] = commit.checkpoint_key(
            ctx, row.global_checkpoint_ids[-1])
        global_data = ctx.store.get(run.version_keys[clock.version])
    else:
        asy = spec["async"]
        clock = AsyncClock.start(
            seed=spec["seed"], classes=plan.device_classes, class_index=plan.class_index,
            availability=plan.devices.availability,
            min_battery_pct=plan.devices.min_battery_pct, concurrency=asy["concurrency"],
            buffer_size=asy["buffer_size"], max_staleness=asy["max_staleness"])
        global_data = initial_weights(ctx, model_id=plan.model.id)
        if not commit.mark_started(ctx, row):
            state.status = "cancelled"
            return False
    state.status = "running"
    if not row.rounds_done:
        run.version_keys[0] = commit.put_initial(ctx, row, global_data)
    run.weights[clock.version] = ckptfile.read(global_data, ctx.settings.work_path)
    evaluator = Evaluator(ctx, plan, load_inputs(ctx, plan))
    if row.rounds_done:  # the updates under way when the fleet stopped: trained again
        running = clock.running()
        for v in sorted({s.version for s in running}):
            run.ensure_version(v)
        state.round, state.updates_done, state.updates_in_round = row.rounds_done, 0, 0
        run.train(running, state)

    with ThreadPoolExecutor(1, thread_name_prefix=f"commit-{row.id}") as committer:
        writing: Future[Any] | None = None
        try:
            for r in range(row.rounds_done + 1, spec["rounds"] + 1):
                if state.cancel.is_set() or state.stop.is_set():
                    return False
                timer = Timer()
                aplan = clock.plan_update(
                    examples=plan.examples, global_bytes=len(global_data),
                    update_bytes=len(global_data), model_bytes=plan.model.size_bytes)
                if aplan.status == "stalled":
                    raise Stalled(f"stalled at server update {r}: no arrival can come (every "
                                  "device offline for good, or every battery at or below "
                                  f"min_battery_pct {plan.devices.min_battery_pct:g} and none "
                                  "charging)")
                state.round, state.updates_done = r, 0
                state.updates_in_round = sum(s.will_arrive for s in aplan.starts)
                state.touch()
                timer.lap("plan_s")
                run.train(list(aplan.starts), state, aplan.arrivals)
                timer.lap("updates_s")
                results, failures = run.arrived(aplan)
                if failures and not spec["accept_failures"]:
                    c = min(failures)
                    raise UpdateFailed(f"round {r}: client {c}'s update failed: {failures[c]} "
                                       "(accept_failures is false)")
                global_data = run.server_update(aplan, results, failures)
                timer.lap("aggregate_s")
                if writing is not None:
                    writing.result()
                timer.lap("wait_s")
                clock.apply(aplan)
                latest = _latest(results)
                staged = commit.stage_round(
                    ctx, row, plan, run.round_plan(aplan), latest, global_data, run.clients,
                    {"strategy": run.state_arrays(), "clock": clock.state()},
                    timer.with_updates(latest), timer.started, failures)
                staged.staleness = aplan.staleness
                run.after_commit(aplan, staged.global_key)
                timer.lap("stage_s")
                staged.timings.update(timer.laps)
                writing = committer.submit(_commit, ctx, state, row, evaluator, staged,
                                           global_data)
                yield
        finally:
            run.drop_scratch()
            if writing is not None:
                writing.result()
    return True


def _latest(results: list[tuple[Ended, int, UpdateResult]]) -> dict[int, UpdateResult]:
    """Per device, its last arrival of the update (its own checkpoint and loss), with the
    train steps of all of them: a fast device may arrive twice in one server update."""
    out: dict[int, UpdateResult] = {}
    for _, c, res in results:
        out[c] = replace(res, steps=out[c].steps + res.steps) if c in out else res
    return out


class _Run:
    """What the loop keeps between server updates, owned by the fleet's driver thread:
    the weights of the versions still needed, the trained updates by start index, the rule."""

    def __init__(self, ctx: Context, row: FleetRow, plan: FleetPlan) -> None:
        self.ctx, self.row, self.plan = ctx, row, plan
        self.rule = make_rule(plan.spec["async"])
        self.clients = commit.load_clients(ctx, row.id)
        self.personal: dict[str, np.ndarray] = {}
        self.version_keys: dict[int, str] = {}  # version -> its global checkpoint's key
        self.weights: dict[int, dict[str, np.ndarray]] = {}  # version -> shared arrays
        self.trained: dict[int, UpdateResult | UpdateFailure] = {}  # start index -> outcome
        self.battery: dict[int, float] = {}  # start index -> battery when it started
        self.scratch: list[str] = []  # own-variable blobs of a plan's restarting devices
        self._arrived: set[int] = set()  # start indices that arrive in the plan under way

    def load(self, arrays: Mapping[str, np.ndarray]) -> None:
        """The rule's buffer and the personal sums, as state_arrays() wrote them."""
        rule = {k.removeprefix(f"{RULE}/"): v for k, v in arrays.items()
                if k.startswith(f"{RULE}/")}
        if isinstance(self.rule, FedBuff):
            self.rule.load_state(rule)
        self.personal = {k.removeprefix(f"{PERSONAL}/"): np.array(v, dtype=np.float64)
                         for k, v in arrays.items() if k.startswith(f"{PERSONAL}/")}

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The rule's buffer (FedBuff) and the personal sums, for the state blob."""
        out = {f"{RULE}/{k}": v for k, v in self.rule.state().items()} \
            if isinstance(self.rule, FedBuff) else {}
        out.update({f"{PERSONAL}/{k}": v.copy() for k, v in self.personal.items()})
        return out

    def ensure_version(self, v: int) -> None:
        """Version v's key and shared arrays (on resume: from its Round's checkpoint)."""
        if v in self.weights:
            return
        if v not in self.version_keys:
            self.version_keys[v] = (fleet_prefix(self.row) + "initial.ckpt" if v == 0 else
                                    commit.checkpoint_key(self.ctx,
                                                          self.row.global_checkpoint_ids[v - 1]))
        self.weights[v] = ckptfile.read(self.ctx.store.get(self.version_keys[v]),
                                        self.ctx.settings.work_path)

    def train(self, starts: list[Start], state: FleetState,
              arrivals: tuple[Ended, ...] = ()) -> None:
        """Train every start that will arrive, in waves (one update per client per wave)."""
        self._arrived = {e.start_index for e in arrivals}
        for s in starts:
            self.battery[s.index] = s.battery_pct
        todo = sorted((s for s in starts if s.will_arrive), key=lambda s: s.index)
        while todo:
            wave: list[Start] = []
            seen: set[int] = set()
            for s in todo:
                if s.client_id not in seen:
                    wave.append(s)
                seen.add(s.client_id)
            todo = [s for s in todo if s not in wave]
            jobs = {s.client_id: s for s in wave}
            updates = [update_for(self.plan, self.row.id, self.row.user_id, self._own_key(s),
                                  s.version + 1, s.client_id, self.version_keys[s.version],
                                  seed=(int(self.plan.spec["seed"]), s.index, s.client_id))
                       for s in wave]
            for outcome in self.ctx.executor.run_updates(updates, state.stop.is_set):
                self.trained[jobs[outcome.client_id].index] = outcome
                state.updates_done += 1
                state.touch()

    def _own_key(self, s: Start) -> str | None:
        """The device's own variables before this start: its latest successful update's."""
        if not self.plan.keep:
            return None
        mine = [i for i, res in self.trained.items()
                if i < s.index and isinstance(res, UpdateResult) and res.client_id == s.client_id
                and i in self._arrived]
        if not mine:
            held = self.clients.get(s.client_id)
            return held.checkpoint_key if held else None
        key = fleet_prefix(self.row) + f"own-{max(mine)}.ckpt"
        res = self.trained[max(mine)]
        assert isinstance(res, UpdateResult)
        self.ctx.store.put(key, res.data)
        self.scratch.append(key)
        return key

    def arrived(self, aplan: AsyncPlan
                ) -> tuple[list[tuple[Ended, int, UpdateResult]], dict[int, str]]:
        """The plan's arrivals that trained well, in event order, and the failed ones."""
        ok: list[tuple[Ended, int, UpdateResult]] = []
        failures: dict[int, str] = {}
        for e in aplan.arrivals:
            got = self.trained[e.start_index]
            if isinstance(got, UpdateFailure):
                failures[e.client_id] = got.reason
            else:
                ok.append((e, e.client_id, got))
        return ok, failures

    def server_update(self, aplan: AsyncPlan, results: list[tuple[Ended, int, UpdateResult]],
                      failures: dict[int, str]) -> bytes:
        """The new global checkpoint: the rule over the shared variables, arrival by arrival
        (a failed arrival adds a zero delta to FedBuff's buffer: K still counts it; FedAsync
        skips it), the personal mean over the devices' latest personal values."""
        scratch = self.ctx.settings.work_path
        shared = self.plan.shared
        current = self.weights[aplan.version - 1]
        x = {v: current[v] for v in shared}
        good = {e.start_index: res for e, _, res in results}
        for e in aplan.arrivals:
            self.ensure_version(e.start_version)
            start = {v: self.weights[e.start_version][v] for v in shared}
            res = good.get(e.start_index)
            if res is None and not isinstance(self.rule, FedBuff):
                continue
            y = start if res is None else {v: res.arrays[v] for v in shared}
            faults = self.plan.faults
            if res is not None and faults is not None and e.client_id in self.plan.faulty \
                    and faults.kind != "label_flip":  # relative to its start, seeded by it
                y = corrupt(faults.kind, y, start, scale=faults.scale,
                            seed=self.plan.spec["seed"], server_round=e.start_index,
                            client_id=e.client_id)
            x = server_update(self.rule, x, [e], {e.start_version: start}, {e.client_id: y})
        merged = {v: np.asarray(x[v], dtype=current[v].dtype) if v in x else current[v]
                  for v in current}
        if self.plan.spec["personal"]:
            by_client = {c: res for _, c, res in results}
            merged.update(personal_mean(self.plan, by_client, self.personal, self._own,
                                        current))
        check_finite(merged, aplan.version, "async.server_lr or mixing")
        self.weights[aplan.version] = merged
        return ckptfile.write(merged, scratch)

    def _own(self, c: int) -> Mapping[str, np.ndarray] | None:
        held = self.clients.get(c)
        if held is None or held.checkpoint_key is None:
            return None
        return ckptfile.read(self.ctx.store.get(held.checkpoint_key), self.ctx.settings.work_path)

    def round_plan(self, aplan: AsyncPlan) -> RoundPlan:
        """The server update as a Round's record."""
        failed = {e.start_index for e in aplan.arrivals
                  if isinstance(self.trained.get(e.start_index), UpdateFailure)}
        return async_round.round_plan(aplan, failed, self.battery, self.plan.num_clients)

    def after_commit(self, aplan: AsyncPlan, global_key: str) -> None:
        """Forget what no later server update needs: ended updates, unneeded versions."""
        self.version_keys[aplan.version] = global_key
        for e in aplan.ended:
            self.trained.pop(e.start_index, None)
            self.battery.pop(e.start_index, None)
        keep = set(aplan.needed_versions)
        for v in [v for v in self.weights if v not in keep]:
            del self.weights[v]
        self.drop_scratch()

    def drop_scratch(self) -> None:
        """Delete the plan's temporary own-variable blobs."""
        commit.drop(self.ctx, self.scratch)
        self.scratch = []
