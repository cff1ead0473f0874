"""One client update of a fleet, on whatever interpreter runs it (a live session in this
process, or a worker's on a cluster): restore the start weights, train the client's epochs
with the run engine, save; everything it needs arrives by value or by store key."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from app.runtime import ckptfile, runner
from app.runtime.interpreter import LiteSession
from app.runtime.runner import Plan

Arrays = dict[str, np.ndarray[Any, Any]]


@dataclass(frozen=True, eq=False)
class ClientUpdate:
    """What one client trains in one round (or in its fine-tuning after the last round)."""

    fleet_id: str
    round: int  # the fine-tuning after round R is round R + 1
    client_id: int
    session_id: str  # the device's session, of user_id on model_id
    user_id: str
    model_id: str
    model_key: str  # the .tflite in the store
    dataset_key: str  # the fleet's dataset (.npz) in the store
    indices: np.ndarray  # the client's training examples, ascending
    start_key: str  # the global checkpoint (every variable) it starts from
    own_key: str | None  # its own last checkpoint, whose `keep` variables override the global
    keep: tuple[str, ...]  # variable-name prefixes taken from own_key ("" keeps every one)
    plan: Plan
    train_inputs: tuple[str, ...]  # the train signature's inputs, read from the dataset
    flip_label: str | None = None  # a faulty client's label input, trained on c -> C-1-c
    num_classes: int = 0
    # After training, the accuracy of the weights on these examples (the client's holdout),
    # predicted by `output` of the infer signature from `infer_inputs`, against `label`.
    eval_indices: np.ndarray | None = None
    label: str | None = None
    output: str | None = None
    infer_inputs: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class UpdateResult:
    """A finished update: its saved checkpoint (bytes and arrays) and its last epoch's loss."""

    client_id: int
    data: bytes
    arrays: dict[str, np.ndarray[Any, Any]] = field(repr=False)
    loss: float | None
    examples: int
    steps: int = 0  # train steps this update ran
    correct: int | None = None  # holdout examples predicted right (eval_indices given)
    timings: dict[str, float] = field(default_factory=dict)  # seconds: restore, train, save


def start_weights(update: ClientUpdate, fetch: Callable[[str], bytes],
                  read: Callable[[str], Mapping[str, np.ndarray[Any, Any]]],
                  scratch: Path) -> bytes:
    """The checkpoint file to restore: the global one, or the global with the client's own
    values for the `keep` variables (FedPer's personal layers; everything for `local`)."""
    if update.own_key is None or not update.keep:
        return fetch(update.start_key)
    merged = dict(read(update.start_key))
    own = read(update.own_key)
    for name in merged:
        if any(name.startswith(prefix) for prefix in update.keep):
            merged[name] = own[name]
    return ckptfile.write(merged, scratch)


class _Hooks:
    def __init__(self, stopped: Callable[[], bool]) -> None:
        self.stopped = stopped
        self.last: float | None = None
        self.steps = 0

    def progress(self, epoch: int, losses: list[float]) -> None:
        self.steps += len(losses)

    def epoch_end(self, epoch: int, mean_loss: float | None, snapshot: None) -> None:
        self.last = mean_loss


def train(session: runner.Trainable, restore: Callable[[Path], None],
          save: Callable[[Path], None], update: ClientUpdate, start: bytes, arrays: Arrays,
          scratch: Path, stopped: Callable[[], bool]) -> UpdateResult:
    """Restore `start`, train the plan, save: the update's result. Raises Interrupted when
    stopped() says so between steps (the round is then discarded)."""
    # Two files, each written once: on ext4, saving over the file just restored forces its
    # blocks out and makes the unlink cost ~0.5 ms an update.
    name = f"update-{update.fleet_id}-{update.client_id}-{update.round}"
    path, out = scratch / f"{name}-in.ckpt", scratch / f"{name}-out.ckpt"
    clock = [time.perf_counter()]

    def lap() -> float:
        clock.append(time.perf_counter())
        return clock[-1] - clock[-2]

    try:
        path.write_bytes(start)
        restore(path)
        took = {"restore_s": lap()}
        hooks = _Hooks(stopped)
        if not runner.run(session, arrays, update.plan, hooks, snapshot=lambda: None,
                          turn_seconds=math.inf):
            raise Interrupted(update.client_id)
        took["train_s"] = lap()
        save(out)
        data = out.read_bytes()
        took["save_s"] = lap()
    finally:
        path.unlink(missing_ok=True)
        out.unlink(missing_ok=True)
    arrays_out = ckptfile.read(data, scratch)
    took["read_s"] = lap()
    return UpdateResult(update.client_id, data, arrays_out, hooks.last, len(update.indices),
                        steps=hooks.steps, timings=took)


class Bare:
    """A bare interpreter (a worker's, outside any session) as something the runner trains:
    every batch, stopping early only when stop() says so."""

    def __init__(self, lite: LiteSession) -> None:
        self.lite = lite

    def train_steps(self, batches: Any, budget_s: float,
                    stop: Callable[[], bool] = lambda: False) -> list[float]:
        losses = []
        for batch in batches:
            loss = self.lite.run("train", batch).get("loss")
            # As a live session counts it; .item() of one value is np.mean's exact answer
            # at a tenth of its cost (a fleet's lanes run a step every ~0.1 ms).
            losses.append(math.nan if loss is None else
                          float(loss.item() if loss.size == 1 else np.mean(loss)))
            if stop():
                break
        return losses


class Interrupted(Exception):
    """An update stopped before its end (the fleet is cancelled or the server stops)."""
