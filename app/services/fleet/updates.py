"""A round's client updates as the executor receives them, and the new global checkpoint
made from those that completed: the strategy over the shared variables (faulty devices'
updates corrupted as the spec says) and, under `personal`, the example-weighted mean of the
devices' latest personal values (FedPer's global model: what a new device starts from)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from app.executor.update import ClientUpdate, UpdateResult
from app.federated.faults import corrupt
from app.federated.privacy import RoundPrivacy
from app.federated.strategies import Strategy
from app.runtime import ckptfile
from app.runtime.runner import Plan
from app.services.fleet.plan import FleetPlan
from app.services.fleet.private import FleetPrivacy

PERSONAL = "personal"  # the state's slot for the running sums of the personal mean


class NonFiniteGlobal(Exception):
    """The aggregate holds NaN or infinite values: the fleet cannot go on."""


def update_for(plan: FleetPlan, fleet_id: str, user_id: str, own_key: str | None, r: int,
               c: int, start_key: str, *, epochs: int | None = None,
               evaluate: bool = False, seed: tuple[int, ...] | None = None) -> ClientUpdate:
    """Client c's update in round r (or its fine-tuning: r = rounds + 1, `epochs`); `seed`
    replaces (spec seed, r, c) where r does not name one update (async fleets)."""
    spec, part = plan.spec, plan.partition[c]
    flip = plan.faults is not None and plan.faults.kind == "label_flip" and c in plan.faulty
    return ClientUpdate(
        fleet_id=fleet_id, round=r, client_id=c, session_id=session_id_for(fleet_id, c),
        user_id=user_id, model_id=plan.model.id, model_key=plan.model.key,
        dataset_key=plan.dataset.key, indices=part.train, start_key=start_key,
        own_key=own_key if plan.keep else None, keep=plan.keep,
        plan=Plan(epochs=spec["local_epochs"] if epochs is None else epochs,
                  batch_size=spec["batch_size"], shuffle=spec["shuffle"],
                  seed=seed or (spec["seed"], r, c), fixed_batch=plan.fixed_batch),
        train_inputs=plan.train_inputs, flip_label=plan.label if flip else None,
        num_classes=plan.num_classes, eval_indices=part.holdout if evaluate else None,
        label=plan.label, output=plan.output, infer_inputs=plan.infer_inputs)


def session_id_for(fleet_id: str, client_id: int) -> str:
    """A device's session id: made from its fleet's and its own, so that a round re-run
    after a restart gives the same device the same session."""
    return f"ses_{fleet_id.removeprefix('flt_')}_{client_id:07d}"


def aggregate(plan: FleetPlan, strategy: Strategy, r: int, global_data: bytes,
              results: Mapping[int, UpdateResult], personal: dict[str, np.ndarray],
              own: Callable[[int], Mapping[str, np.ndarray] | None], scratch: Path,
              dp: FleetPrivacy | None = None) -> tuple[bytes, RoundPrivacy | None]:
    """The new global checkpoint from the completed updates sorted by client id; `personal`
    (the running sums of the personal mean, moved on in place) and `own(c)` (a device's
    last own values, None before its first update) serve FedPer's global personal values.
    With `dp`, the strategy takes the clipped, noised mean delta as its one input."""
    if not results:  # an abandoned round: the global stays
        return global_data, None
    current = ckptfile.read(global_data, scratch)
    base = {v: current[v] for v in plan.shared}
    inputs = []
    for c in sorted(results):
        got = {v: results[c].arrays[v] for v in plan.shared}
        if plan.faults is not None and c in plan.faulty and plan.faults.kind != "label_flip":
            got = corrupt(plan.faults.kind, got, base, scale=plan.faults.scale,
                          seed=plan.spec["seed"], server_round=r, client_id=c)
        inputs.append((got, results[c].examples))
    info = None
    if dp is not None:
        noised, info = dp.mean_update(base, inputs, seed=plan.spec["seed"], round=r,
                                      m=plan.spec["clients_per_round"])
        inputs = [(noised, 1)]
    new = strategy.aggregate(r, base, inputs)
    merged = {v: np.asarray(new[v], dtype=current[v].dtype) if v in new else current[v]
              for v in current}
    if plan.spec["personal"] and plan.spec["strategy"]["name"] != "local":
        merged.update(personal_mean(plan, results, personal, own, current))
    check_finite(merged, r, "the strategy's server_lr")
    return ckptfile.write(merged, scratch), info


def check_finite(weights: Mapping[str, np.ndarray], r: int, knob: str) -> None:
    """NonFiniteGlobal unless every float of a new global model is finite."""
    bad = [v for v, a in weights.items()
           if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all()]
    if bad:
        raise NonFiniteGlobal(f"round {r}: the global model turned non-finite "
                              f"({', '.join(bad[:3])}); lower {knob} or check the data")


def personal_mean(plan: FleetPlan, results: Mapping[int, UpdateResult],
                  personal: dict[str, np.ndarray],
                  own: Callable[[int], Mapping[str, np.ndarray] | None],
                  current: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each personal variable as the example-weighted mean of the latest values of the
    devices that have trained so far (float64 sums, updated in client-id order)."""
    names = plan.personal
    total = personal.setdefault("__examples__", np.zeros(1, dtype=np.float64))
    for c in sorted(results):
        n = float(results[c].examples)
        before = own(c)
        if before is None:
            total += n
        for v in names:
            acc = personal.setdefault(v, np.zeros(current[v].shape, dtype=np.float64))
            acc += n * np.asarray(results[c].arrays[v], dtype=np.float64)
            if before is not None:
                acc -= n * np.asarray(before[v], dtype=np.float64)
    if not total[0] > 0:
        return {}
    return {v: (personal[v] / total[0]).astype(current[v].dtype) for v in names}


def state_arrays(strategy: Strategy, personal: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The strategy's state and the personal sums, as one flat dict of arrays."""
    out = dict(strategy.state())
    out.update({f"{PERSONAL}/{k}": v.copy() for k, v in personal.items()})
    return out


def split_state(arrays: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray],
                                                           dict[str, np.ndarray]]:
    """state_arrays() undone: (the strategy's state, the personal sums)."""
    strategy, personal = {}, {}
    for key, value in arrays.items():
        if key.startswith(f"{PERSONAL}/"):
            personal[key.removeprefix(f"{PERSONAL}/")] = np.array(value, dtype=np.float64)
        else:
            strategy[key] = value
    return strategy, personal
