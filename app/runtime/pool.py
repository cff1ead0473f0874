"""Live sessions: an interpreter, its FIFO executor and its in-memory counters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from app.runtime.codec import decode_inputs, encode_outputs
from app.runtime.interpreter import LiteSession
from app.runtime.serial import SerialExecutor
from app.runtime.signatures import Signatures


@dataclass(eq=False)
class LiveSession:
    """One user's interpreter. Everything but the strand is touched only inside the strand."""

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
    flushed_steps: int = 0
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    last_used: float = field(default_factory=time.monotonic)

    def call(self, signature: str, body: Any) -> dict[str, Any]:
        """Decode a JSON body, run a signature that does not train, encode its outputs."""
        inputs = decode_inputs(self.signatures[signature], body, signature)
        return encode_outputs(self.lite.run(signature, inputs))

    def train(self, body: Any) -> tuple[dict[str, Any], int]:
        """Decode a JSON body, run one train step, count it; returns outputs and the step."""
        inputs = decode_inputs(self.signatures["train"], body, "train")
        return encode_outputs(self.train_arrays(inputs)), self.steps

    def train_arrays(self, inputs: dict[str, np.ndarray[Any, Any]]) -> dict[str, Any]:
        """One train step on checked arrays."""
        outputs = self.lite.run("train", inputs)
        self.steps += 1
        loss = outputs.get("loss")
        if loss is not None:
            self.last_loss = float(np.mean(loss))
        self.updated_at = datetime.now(UTC)
        return outputs

    @property
    def dirty(self) -> bool:
        """Steps taken since the last checkpoint."""
        return self.steps != self.saved_steps


class SessionPool:
    """The live sessions of this process and the threads that run them."""

    def __init__(self, workers: int) -> None:
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="interpreter")
        self._live: dict[str, LiveSession] = {}
        self._loading: dict[str, Future[LiveSession]] = {}
        self._lock = threading.Lock()

    def strand(self) -> SerialExecutor:
        """A new FIFO executor on the shared threads."""
        return SerialExecutor(self.executor)

    def get(self, session_id: str) -> LiveSession | None:
        """The live session, if loaded."""
        live = self._live.get(session_id)
        if live is not None:
            live.last_used = time.monotonic()
        return live

    def get_or_load(self, session_id: str, loader: Callable[[], LiveSession]) -> LiveSession:
        """The live session, loading it once even when many callers ask at the same time."""
        with self._lock:
            live = self._live.get(session_id)
            if live is not None:
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

    def remove(self, session_id: str) -> LiveSession | None:
        """Forget a live session (its interpreter is freed when its last call ends)."""
        with self._lock:
            return self._live.pop(session_id, None)

    def all(self) -> list[LiveSession]:
        """A snapshot of the live sessions."""
        with self._lock:
            return list(self._live.values())

    def __len__(self) -> int:
        return len(self._live)

    def shutdown(self) -> None:
        """Finish queued calls and stop the threads."""
        self.executor.shutdown(wait=True)
