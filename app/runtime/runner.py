"""The run engine: train one session over epochs of batches, a turn at a time, with hooks.

It knows nothing of job rows or fleets: a job's hooks persist each epoch's checkpoint and
report progress, a fleet's client update only wants the weights at the end. Where a turn
runs is the caller's choice (`call`): a job hands each turn to the session's strand, so
calls on the session interleave with it; code already in the strand runs turns in place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar

import numpy as np

Arrays = dict[str, np.ndarray[Any, Any]]
S = TypeVar("S")
# Interpreter time per turn: how often progress moves and a job's driver wakes up. A call
# queued on the session does not wait for the turn to end: the turn yields after the step.
TURN_SECONDS = 0.1


def steps_per_epoch(num_examples: int, batch_size: int, fixed_batch: bool) -> int:
    """Batches in one epoch; a fixed batch dimension drops the last partial batch."""
    full, rest = divmod(num_examples, batch_size)
    return full if fixed_batch else full + (1 if rest else 0)


@dataclass(frozen=True)
class Plan:
    """What to train: epochs of batches, shuffled per (seed..., epoch) or in dataset order."""

    epochs: int
    batch_size: int
    shuffle: bool
    seed: Sequence[int]
    fixed_batch: bool
    first_epoch: int = 0  # a resumed job starts after its last finished epoch

    def batches(self, arrays: Arrays, epoch: int) -> Iterator[Arrays]:
        """The batches of one epoch. The order depends only on (seed, epoch), so a run
        resumed at an epoch boundary sees exactly the batches an uninterrupted one would."""
        n = len(next(iter(arrays.values())))
        order = (np.random.default_rng([*self.seed, epoch]).permutation(n) if self.shuffle
                 else None)
        for i in range(steps_per_epoch(n, self.batch_size, self.fixed_batch)):
            lo, hi = i * self.batch_size, (i + 1) * self.batch_size
            if order is None:  # a view: dataset order needs no copy
                yield {name: arr[lo:hi] for name, arr in arrays.items()}
            else:
                idx = order[lo:hi]
                yield {name: arr[idx] for name, arr in arrays.items()}


class Trainable(Protocol):
    """What the runner trains: a live session (app.runtime.pool.LiveSession)."""

    def train_steps(self, batches: Iterator[Arrays], budget_s: float,
                    stop: Callable[[], bool] = ...) -> list[float]: ...


S_contra = TypeVar("S_contra", contravariant=True)


class Hooks(Protocol[S_contra]):
    """What a run reports to, and asks whether to go on."""

    def stopped(self) -> bool:
        """Cancel or shutdown asked: the run ends after the step under way."""

    def progress(self, epoch: int, losses: list[float]) -> None:
        """Steps of `epoch` (1-based) just ran, with their losses (NaN: none reported)."""

    def epoch_end(self, epoch: int, mean_loss: float | None, snapshot: S_contra) -> None:
        """`epoch` (1-based) is done; snapshot holds the weights right after its last step."""


def run(session: Trainable, arrays: Arrays, plan: Plan, hooks: Hooks[S],
        snapshot: Callable[[], S], *, call: Callable[[Callable[[], Any]], Any] = lambda f: f(),
        turn_seconds: float = TURN_SECONDS) -> bool:
    """Train every epoch of the plan; True when all ran, False when hooks.stopped() said so.

    Each turn runs `call(turn)`; the epoch's snapshot is taken in the same turn as its last
    step, before any other call on the session can change the weights.
    """
    n = len(next(iter(arrays.values())))
    per_epoch = steps_per_epoch(n, plan.batch_size, plan.fixed_batch)
    for epoch in range(plan.first_epoch, plan.epochs):
        batches = plan.batches(arrays, epoch)
        losses: list[float] = []
        snap: S | None = None
        done = False
        hooks.progress(epoch + 1, [])  # the epoch under way
        while not done:
            if hooks.stopped():
                return False
            todo = per_epoch - len(losses)

            chunk: list[float]
            chunk, snap, done = call(partial(_turn, session, batches, todo, turn_seconds,
                                             hooks.stopped, snapshot))
            losses.extend(chunk)
            hooks.progress(epoch + 1, chunk)
        hooks.epoch_end(epoch + 1, mean_loss(losses), snap)  # type: ignore[arg-type]
    return True


def _turn(session: Trainable, batches: Iterator[Arrays], todo: int, turn_seconds: float,
          stop: Callable[[], bool], snapshot: Callable[[], S]
          ) -> tuple[list[float], S | None, bool]:
    """One turn in the strand: up to `todo` steps; with the epoch's last, its snapshot."""
    chunk = session.train_steps(batches, turn_seconds, stop)
    if len(chunk) < todo:
        if not chunk:  # cannot happen: the plan yields every batch of the epoch
            raise RuntimeError(f"the epoch ran out of batches {todo} steps early")
        return chunk, None, False
    return chunk, snapshot(), True


def mean_loss(losses: list[float]) -> float | None:
    """The mean of the finite losses, or None when there is none (NaN: not reported)."""
    known = [x for x in losses if not math.isnan(x)]
    mean = sum(known) / len(known) if known else None
    return mean if mean is not None and math.isfinite(mean) else None
