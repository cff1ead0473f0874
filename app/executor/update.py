"""One client update of a fleet, the one home of what runs on a lane or a Ray actor: restore
the start weights, train the client's epochs with the run engine, save, measure its holdout;
everything it needs arrives by value or by store key. An update that raises (the
interpreter, the store) or ends with weights or a loss that are not finite comes back as
an UpdateFailure, data the round records, never an exception that ends the fleet."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from app.federated.faults import flip_labels
from app.federated.partition import class_ids
from app.runtime import ckptfile, runner
from app.runtime.evaluate import predict
from app.runtime.interpreter import LiteSession
from app.runtime.runner import Plan
from app.runtime.signatures import Signatures, SignatureSpec, numpy_dtype

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


@dataclass(frozen=True)
class UpdateFailure:
    """An update that did not end with usable weights, and why (no server paths in it)."""

    client_id: int
    reason: str


Outcome = UpdateResult | UpdateFailure


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
          save: Callable[[Path], None], update: ClientUpdate, start: bytes | Path,
          arrays: Arrays, scratch: Path, stopped: Callable[[], bool]) -> UpdateResult:
    """Restore `start` (bytes, or a file the caller keeps), train the plan, save: the
    update's result. Raises Interrupted when stopped() says so between steps (the round is
    then discarded)."""
    # Two files, each written once: on ext4, saving over the file just restored forces its
    # blocks out and makes the unlink cost ~0.5 ms an update.
    name = f"update-{update.fleet_id}-{update.client_id}-{update.round}"
    path, out = scratch / f"{name}-in.ckpt", scratch / f"{name}-out.ckpt"
    clock = [time.perf_counter()]

    def lap() -> float:
        clock.append(time.perf_counter())
        return clock[-1] - clock[-2]

    try:
        if isinstance(start, Path):
            restore(start)
        else:
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


_PATH = re.compile(r"(?:[A-Za-z]:)?(?:/[\w.#@%+=~-]+){2,}/?")


def public_reason(exc: BaseException) -> str:
    """An exception as a user may read it: its kind and message, server paths taken out."""
    detail = str(getattr(exc, "detail", exc)).split("\n")[0]
    return f"{type(exc).__name__}: {_PATH.sub('<path>', detail)}"[:500]


def client_arrays(update: ClientUpdate, dataset: Mapping[str, np.ndarray[Any, Any]],
                  spec: SignatureSpec) -> Arrays:
    """The client's training examples in the train signature's dtypes (labels flipped
    c -> C-1-c for a label-flipping device), whichever executor trains them."""
    arrays = {name: np.ascontiguousarray(dataset[name][update.indices],
                                         dtype=numpy_dtype(spec.inputs[name].dtype))
              for name in update.train_inputs}
    if update.flip_label is not None:
        arrays[update.flip_label] = flip_labels(arrays[update.flip_label], update.num_classes)
    return arrays


def holdout_correct(update: ClientUpdate, dataset: Mapping[str, np.ndarray[Any, Any]],
                    infer: Callable[[Arrays], dict[str, Any]], spec: SignatureSpec
                    ) -> int | None:
    """How many of the update's evaluation examples the trained weights predict right."""
    idx = update.eval_indices
    if idx is None or not idx.size or update.output is None or update.label is None:
        return None
    inputs = {name: np.ascontiguousarray(dataset[name][idx],
                                         dtype=numpy_dtype(spec.inputs[name].dtype))
              for name in update.infer_inputs}
    fixed = {t.shape[0] for t in spec.inputs.values() if t.shape} - {-1}
    predicted = predict(infer, inputs, update.output, min(fixed) if fixed else None)
    return int((predicted == class_ids(dataset[update.label][idx])).sum())


def run_update(update: ClientUpdate, lite: Callable[[], LiteSession],
               sigs: Callable[[LiteSession], Signatures],
               dataset: Callable[[], Mapping[str, np.ndarray[Any, Any]]],
               fetch: Callable[[str], bytes],
               read: Callable[[str], Mapping[str, np.ndarray[Any, Any]]],
               scratch: Path, stopped: Callable[[], bool],
               start_file: Callable[[str], Path] | None = None,
               arrays: Callable[[ClientUpdate, Mapping[str, np.ndarray[Any, Any]],
                                 SignatureSpec], Arrays] = client_arrays) -> Outcome:
    """One client update on an interpreter of its model, as every executor runs it: the
    start weights restored, the plan trained, the weights saved, the holdout measured.
    Interrupted propagates (the round is dropped); any other failure is an UpdateFailure.
    With start_file, an update that starts from the global alone restores the file it gives
    for that key (one a round, not one an update); `arrays` gives its training examples."""
    try:
        interpreter = lite()
        signatures = sigs(interpreter)
        data = dataset()
        start: bytes | Path
        if start_file is not None and (update.own_key is None or not update.keep):
            start = start_file(update.start_key)
        else:
            start = start_weights(update, fetch, read, scratch)
        result = train(Bare(interpreter), interpreter.restore, interpreter.save, update, start,
                       arrays(update, data, signatures["train"]), scratch, stopped)
        bad = not_finite(result)
        if bad:
            return UpdateFailure(update.client_id, bad)
        correct = holdout_correct(update, data, lambda x: interpreter.run("infer", x),
                                  signatures["infer"])
    except Interrupted:
        raise
    except Exception as exc:  # noqa: BLE001 - a failed update is data for its round
        return UpdateFailure(update.client_id, public_reason(exc))
    return replace(result, correct=correct)


def not_finite(result: UpdateResult) -> str | None:
    """Why an update's loss or weights cannot be aggregated, or None when they can."""
    if result.loss is not None and not math.isfinite(result.loss):
        return f"non-finite loss ({result.loss})"
    for name, value in result.arrays.items():
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            return f"non-finite weights in {name}"
    return None
