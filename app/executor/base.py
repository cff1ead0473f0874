"""The executor interface: what runner work is, and what runs it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from app.federated.faults import flip_labels
from app.federated.partition import class_ids
from app.runtime.client_update import Bare, ClientUpdate, UpdateResult, start_weights, train
from app.runtime.evaluate import predict
from app.runtime.interpreter import LiteSession
from app.runtime.runner import Hooks, Plan
from app.runtime.session import Arrays, LiveSession, Snapshot
from app.runtime.signatures import Signatures, SignatureSpec, numpy_dtype

__all__ = ["ClientUpdate", "UpdateResult", "TrainingWork", "Executor", "client_arrays",
           "holdout_correct", "run_update"]


@dataclass(frozen=True)
class TrainingWork:
    """Epochs of one session over a dataset: a job. `live` is the session in this process
    (a remote executor restores each epoch's checkpoint into it, so it keeps serving);
    `model_key` and `dataset_key` let a remote worker fetch the same bytes from the store."""

    live: LiveSession
    arrays: Arrays
    plan: Plan
    model_key: str
    dataset_key: str
    start_key: str | None  # the session's head when the job starts: its weights (None: initial)
    scratch: Path


class Executor(Protocol):
    """Runs runner work; every implementation gives bit-identical weights for the same work."""

    def train(self, work: TrainingWork, hooks: Hooks[Snapshot]) -> bool:
        """Run the plan, reporting to hooks; True when every epoch ran, False if stopped."""

    def run_updates(self, updates: Sequence[ClientUpdate], stopped: Callable[[], bool]
                    ) -> Iterator[UpdateResult]:
        """Run a round's client updates in parallel; results in the order they finish
        (the caller aggregates them sorted by client id). Stops between steps when
        stopped() says so, raising client_update.Interrupted."""

    def shutdown(self) -> None:
        """Release workers; work under way was stopped by its hooks first."""


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


def run_update(update: ClientUpdate, lite: LiteSession, sigs: Signatures,
               dataset: Mapping[str, np.ndarray[Any, Any]],
               fetch: Callable[[str], bytes],
               read: Callable[[str], Mapping[str, np.ndarray[Any, Any]]],
               scratch: Path, stopped: Callable[[], bool]) -> UpdateResult:
    """One client update on an interpreter of its model, as every executor runs it: the
    start weights restored, the plan trained, the weights saved, the holdout measured."""
    start = start_weights(update, fetch, read, scratch)
    result = train(Bare(lite), lite.restore, lite.save, update, start,
                   client_arrays(update, dataset, sigs["train"]), scratch, stopped)
    correct = holdout_correct(update, dataset, lambda x: lite.run("infer", x), sigs["infer"])
    return replace(result, correct=correct)
