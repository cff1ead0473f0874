"""Live sessions: an interpreter, its FIFO strand and its in-memory counters.

Who writes what is in app/runtime/README.md; in short, a LiveSession's mutable fields are
written only by tasks running in its strand, except `flushed_at` (the flusher's) and the
LRU order (the pool's, under its lock).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from app.errors import Conflict
from app.runtime.codec import DEFAULT_LIMITS, Limits, decode_inputs, encode_outputs
from app.runtime.interpreter import LiteSession
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

    def call(self, signature: str, body: Any, may_hold_bools: bool = True) -> dict[str, Any]:
        """Decode a JSON body, run a signature that does not train, encode its outputs."""
        self.check_present()
        inputs = decode_inputs(self.signatures[signature], body, signature, self.limits,
                               may_hold_bools=may_hold_bools)
        return encode_outputs(self.lite.run(signature, inputs))

    def train(self, body: Any, may_hold_bools: bool = True) -> tuple[dict[str, Any], int]:
        """Decode a JSON body, run one train step, count it; returns outputs and the step."""
        inputs = decode_inputs(self.signatures["train"], body, "train", self.limits,
                               may_hold_bools=may_hold_bools)
        return encode_outputs(self.train_arrays(inputs)), self.steps

    def train_arrays(self, inputs: Arrays) -> dict[str, Any]:
        """One train step on checked arrays, unless a job owns the session."""
        self.check_present()
        if self.job_id is not None:
            raise Conflict(f"session '{self.id}' is running job '{self.job_id}'; train calls "
                           "wait until it ends or is cancelled (infer works meanwhile)")
        outputs = self._run_train(inputs)
        self.updated_at = datetime.now(UTC)
        return outputs

    def run_arrays(self, signature: str, inputs: Arrays) -> tuple[dict[str, Any], int]:
        """Run any signature on checked arrays; a train step is counted like `train`."""
        if signature == "train":
            return self.train_arrays(inputs), self.steps
        self.check_present()
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


class SessionPool:
    """The live sessions of this process, in least recently used order, and the threads
    that run their strands."""

    def __init__(self, workers: int, max_live: int = 0) -> None:
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="interpreter")
        self.max_live = max_live
        self._live: OrderedDict[str, LiveSession] = OrderedDict()  # oldest use first
        self._loading: dict[str, Future[LiveSession]] = {}
        self._evicting: set[str] = set()
        self._lock = threading.Lock()

    def strand(self) -> SerialExecutor:
        """A new FIFO executor on the shared threads."""
        return SerialExecutor(self.executor)

    def get(self, session_id: str) -> LiveSession | None:
        """The live session, if loaded; marks it most recently used."""
        with self._lock:
            live = self._live.get(session_id)
            if live is not None:
                self._live.move_to_end(session_id)
        return live

    def get_or_load(self, session_id: str, loader: Callable[[], LiveSession]) -> LiveSession:
        """The live session, loading it once even when many callers ask at the same time."""
        with self._lock:
            live = self._live.get(session_id)
            if live is not None:
                self._live.move_to_end(session_id)
                return live
            pending = self._loading.get(session_id)
            owner = pending is None
            if owner:
                pending = self._loading[session_id] = Future()
        assert pending is not None
        if not owner:
            return pending.result()
        try:
            live = loader()
        except BaseException as exc:
            with self._lock:
                del self._loading[session_id]
            pending.set_exception(exc)
            raise
        with self._lock:
            self._live[session_id] = live
            del self._loading[session_id]
        pending.set_result(live)
        return live

    def add(self, live: LiveSession) -> None:
        """Register a session built by its creator."""
        with self._lock:
            self._live[live.id] = live

    def remove(self, session_id: str, live: LiveSession | None = None) -> LiveSession | None:
        """Forget a live session (only that object, when given); its interpreter is freed
        when its last queued call ends."""
        with self._lock:
            self._evicting.discard(session_id)
            current = self._live.get(session_id)
            if current is None or (live is not None and current is not live):
                return None
            return self._live.pop(session_id)

    def remove_mark(self, session_id: str) -> None:
        """An eviction that did not happen: the session may be chosen again later."""
        with self._lock:
            self._evicting.discard(session_id)

    def eviction_candidates(self) -> list[LiveSession]:
        """Least recently used idle sessions beyond max_live, each returned once."""
        if not self.max_live:
            return []
        with self._lock:
            excess = len(self._live) - len(self._evicting) - self.max_live
            chosen: list[LiveSession] = []
            for live in self._live.values():  # oldest use first
                if len(chosen) >= excess:
                    break
                if live.id not in self._evicting and not live.busy:
                    chosen.append(live)
            self._evicting.update(s.id for s in chosen)
            return chosen

    def of_user(self, user_id: str) -> list[LiveSession]:
        """The user's live sessions, least recently used first, not being evicted."""
        with self._lock:
            return [s for s in self._live.values()
                    if s.user_id == user_id and s.id not in self._evicting]

    def claim_for_eviction(self, live: LiveSession) -> bool:
        """Mark one session as being evicted; False if it already is."""
        with self._lock:
            if live.id in self._evicting:
                return False
            self._evicting.add(live.id)
            return True

    def all(self) -> list[LiveSession]:
        """A snapshot of the live sessions."""
        with self._lock:
            return list(self._live.values())

    def __len__(self) -> int:
        return len(self._live)

    def shutdown(self) -> None:
        """Finish queued calls and stop the threads."""
        self.executor.shutdown(wait=True)
