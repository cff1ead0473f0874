"""A live session: one user's interpreter, its FIFO strand and its in-memory counters.

Who writes what is in app/runtime/README.md; in short, a LiveSession's mutable fields are
written only by tasks running in its strand, except `flushed_at` (the flusher's).
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from app.errors import Conflict, InvalidInput
from app.runtime.codec import DEFAULT_LIMITS, Limits, batches_of, encode_outputs, split_batches
from app.runtime.interpreter import LiteSession
from app.runtime.jsontensors import decode_body
from app.runtime.serial import SerialExecutor
from app.runtime.signatures import Signatures

Arrays = dict[str, np.ndarray[Any, Any]]


class SessionEvicted(Exception):
    """The session left memory before this call ran; load it again and retry."""


@dataclass(frozen=True)
class Snapshot:
    """A session's weights as its save signature wrote them, and the counters they go with."""

    data: bytes
    steps: int
    loss: float | None
    updated_at: datetime


@dataclass(eq=False)
class LiveSession:
    """One user's interpreter. Mutable fields: written in the strand only (see the module)."""

    id: str
    user_id: str
    model_id: str
    signatures: Signatures
    lite: LiteSession
    strand: SerialExecutor
    steps: int = 0
    last_loss: float | None = None
    saved_steps: int = 0
    head_checkpoint_id: str | None = None
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    flushed_at: datetime | None = None  # the flusher's: updated_at as last written to the row
    job_id: str | None = None
    evicted: bool = False
    recent_losses: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    limits: Limits = DEFAULT_LIMITS

    def __post_init__(self) -> None:
        self.flushed_at = self.updated_at  # built from its row: nothing to write yet

    def call(self, signature: str, raw: bytes) -> dict[str, Any]:
        """Decode a JSON body, run a signature that does not train, encode its outputs."""
        self.check_present()
        inputs, others = decode_body(raw, self.signatures[signature], signature, self.limits)
        if batches_of(others) != 1:
            raise InvalidInput("batches: several steps per call are for the train signature")
        return encode_outputs(self.lite.run(signature, inputs))

    def train(self, raw: bytes) -> tuple[dict[str, Any], int]:
        """Decode a JSON body, run its train step(s) (`"batches": k`), count them; returns
        outputs and the step."""
        inputs, others = decode_body(raw, self.signatures["train"], "train", self.limits)
        return encode_outputs(self.train_arrays(inputs, batches_of(others))), self.steps

    def train_arrays(self, inputs: Arrays, batches: int = 1) -> dict[str, Any]:
        """Train steps on checked arrays, unless a job owns the session: one, or `batches`
        steps on consecutive equal slices of the first dimension, as one call (nothing else
        runs between them), each output with a leading dimension of `batches`."""
        self.check_present()
        if self.job_id is not None:
            what = "fleet" if self.job_id.startswith("flt_") else "job"
            raise Conflict(f"session '{self.id}' is running {what} '{self.job_id}'; train "
                           "calls wait until it ends or is cancelled (infer works meanwhile)")
        if batches == 1:
            outputs = self._run_train(inputs)
        else:
            steps = [self._run_train(part) for part in split_batches(inputs, batches)]
            outputs = {k: np.stack([np.asarray(s[k]) for s in steps]) for k in steps[0]}
        self.updated_at = datetime.now(UTC)
        return outputs

    def run_arrays(self, signature: str, inputs: Arrays, batches: int = 1
                   ) -> tuple[dict[str, Any], int]:
        """Run any signature on checked arrays; train steps are counted like `train`."""
        if signature == "train":
            return self.train_arrays(inputs, batches), self.steps
        self.check_present()
        if batches != 1:
            raise InvalidInput("batches: several steps per call are for the train signature")
        return self.lite.run(signature, inputs), self.steps

    def train_steps(self, batches: Iterator[Arrays], budget_s: float,
                    stop: Callable[[], bool] = lambda: False) -> list[float]:
        """Train on batches until they end, budget_s passes, stop() says so, or another
        call waits on this session's strand; the losses.

        Jobs call this in turns: a queued infer call waits for one step, not a turn, and
        a job alone on its session hands off to its own thread only every budget_s.
        """
        self.check_present()
        deadline = time.perf_counter() + budget_s
        losses: list[float] = []
        waiting = self.strand.waiting
        try:
            for batch in batches:
                self._run_train(batch)
                losses.append(math.nan if self.last_loss is None else self.last_loss)
                if waiting() or stop() or time.perf_counter() >= deadline:
                    break
        finally:  # once a turn, not once a step
            if losses:
                self.updated_at = datetime.now(UTC)
        return losses

    def snapshot(self, scratch: Path) -> Snapshot:
        """Run the save signature into memory (in the strand): the weights and counters."""
        self.check_present()
        path = scratch / f"snap-{self.id}-{os.urandom(6).hex()}.ckpt"
        try:
            self.lite.save(path)
            data = path.read_bytes()
        finally:
            path.unlink(missing_ok=True)
        return Snapshot(data, self.steps, self.last_loss, self.updated_at)

    def adopt_weights(self, data: bytes, losses: list[float], scratch: Path) -> Snapshot:
        """In the strand: weights trained elsewhere (a job's epoch on a cluster) after
        `losses` more steps: restored here, counted, and returned as a snapshot."""
        self.check_present()
        path = scratch / f"adopt-{self.id}-{os.urandom(6).hex()}.ckpt"
        try:
            path.write_bytes(data)
            self.lite.restore(path)
        finally:
            path.unlink(missing_ok=True)
        self.steps += len(losses)
        known = [x for x in losses if not math.isnan(x)]
        if known:
            self.last_loss = known[-1]
            self.recent_losses.extend(known)
        self.updated_at = datetime.now(UTC)
        return Snapshot(data, self.steps, self.last_loss, self.updated_at)

    def adopt_head(self, checkpoint_id: str, steps: int) -> None:
        """In the strand: a stored checkpoint holding these steps is the head, unless a
        newer one already is (the persister hands its epoch checkpoints over this way)."""
        if steps >= self.saved_steps:
            self.saved_steps, self.head_checkpoint_id = steps, checkpoint_id

    def reset_to(self, lite: LiteSession | None, steps: int, loss: float | None,
                 head: str | None) -> None:
        """In the strand: the weights (a new interpreter, or restored into this one) and the
        counters of a checkpoint, or of the model's initial weights."""
        if lite is not None:
            self.lite = lite
        self.steps = self.saved_steps = steps
        self.last_loss, self.head_checkpoint_id = loss, head
        self.recent_losses.clear()  # their step numbers would no longer follow from `steps`
        self.updated_at = datetime.now(UTC)

    def loss_history(self) -> tuple[int, list[float]]:
        """In the strand: the step number of the first recent loss, and the recent losses."""
        return self.steps - len(self.recent_losses) + 1, list(self.recent_losses)

    def set_job(self, job_id: str | None, *, only_if: str | None = None) -> None:
        """In the strand: a job owns the session (train calls answer 409) or lets it go."""
        if only_if is None or self.job_id == only_if:
            self.job_id = job_id

    def _run_train(self, inputs: Arrays) -> dict[str, Any]:
        outputs = self.lite.run("train", inputs)
        self.steps += 1
        loss = outputs.get("loss")
        if loss is not None:
            self.last_loss = float(loss.item() if loss.size == 1 else np.mean(loss))
            self.recent_losses.append(self.last_loss)
        return outputs

    def check_present(self) -> None:
        """Raise SessionEvicted if the session was dropped from memory meanwhile."""
        if self.evicted:
            raise SessionEvicted(self.id)

    @property
    def dirty(self) -> bool:
        """Steps taken since the last checkpoint."""
        return self.steps != self.saved_steps

    @property
    def busy(self) -> bool:
        """A job owns it or calls are queued: not a candidate for eviction."""
        return self.job_id is not None or self.strand.pending > 0
