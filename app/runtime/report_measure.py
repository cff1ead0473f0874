"""What a model costs on this server, measured on a fresh interpreter: the infer signature's
time per batch, and its checkpoint (the save signature run once): size and variables.

Runs the model in this process: call it on a worker thread, never on the event loop, and only
for a model that passed the probe child's smoke run at upload, as a session would.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from app.runtime import ckptfile
from app.runtime.interpreter import LiteSession
from app.runtime.signatures import Signatures, TensorSpec, numpy_dtype

TIMED_BATCH = 32
WARM_UP = 3
TIMED = 15


@dataclass(frozen=True)
class Measured:
    """The infer time (median of TIMED calls after WARM_UP) at `batch`, and the checkpoint
    that the save signature writes: its bytes and its variables' shapes."""

    batch: int
    infer_ms_per_batch: float | None
    checkpoint: bytes
    variables: dict[str, tuple[int, ...]]

    @property
    def trainable_parameters(self) -> int:
        """Elements of the variables `save` writes: what training changes and devices send."""
        return sum(math.prod(s) for s in self.variables.values())


def batch_of(sigs: Signatures, signature: str) -> int:
    """The signature's fixed batch if it has one, else TIMED_BATCH (the probe's rule)."""
    dims = {t.shape[0] for t in sigs[signature].inputs.values() if t.shape}
    return TIMED_BATCH if -1 in dims or not dims else min(dims)


def _zeros(spec: TensorSpec, batch: int) -> np.ndarray[Any, Any]:
    shape = tuple(batch if d < 0 else d for d in spec.shape)
    if spec.dtype == "string":
        return np.full(shape, b"", dtype=object)
    return np.zeros(shape, dtype=numpy_dtype(spec.dtype))


def measure(model: bytes, sigs: Signatures, scratch: Path, checkpoint: bytes | None = None
            ) -> Measured:
    """Time infer on zeros and read the checkpoint (`checkpoint`, or one `save` writes now)."""
    lite = LiteSession(model)
    if checkpoint is None:
        path = scratch / f"report-{os.urandom(6).hex()}.ckpt"
        try:
            lite.save(path)
            checkpoint = path.read_bytes()
        finally:
            path.unlink(missing_ok=True)
    try:
        variables = {name: tuple(int(d) for d in a.shape)
                     for name, a in ckptfile.read(checkpoint, scratch).items()}
    except ValueError:  # a save that wrote something else: no variables to count
        variables = {}
    batch = batch_of(sigs, "infer")
    inputs = {n: _zeros(t, batch) for n, t in sigs["infer"].inputs.items()}
    took: list[float] = []
    try:
        for i in range(WARM_UP + TIMED):
            started = time.perf_counter()
            lite.run("infer", inputs)
            if i >= WARM_UP:
                took.append(time.perf_counter() - started)
    except Exception:  # noqa: BLE001 - the upload's smoke run passed; timing is best effort
        took = []
    ms = float(np.median(took)) * 1000 if took else None
    return Measured(batch, ms, checkpoint, variables)


@cache
def shipping() -> dict[str, Any]:
    """TensorFlow's published runtime sizes and the app's dependency lines (shipping.json)."""
    text = resources.files("app.runtime").joinpath("shipping.json").read_text("utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc
