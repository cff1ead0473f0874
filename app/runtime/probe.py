"""Child process that smoke-runs untrusted models, so a crash cannot take the server down.

Protocol on stdin/stdout: the parent writes an 8-byte big-endian length and the model
bytes; the child answers one JSON line {"ok": true, "signatures": {...}} or
{"ok": false, "reason": "..."}. Run as ``python -m app.runtime.probe``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from app.runtime.interpreter import load_interpreter, warm_up
from app.runtime.signatures import (
    CHECKPOINT_SIGNATURES,
    REQUIRED_SIGNATURES,
    Signatures,
    TensorSpec,
    numpy_dtype,
    read_signatures,
    signatures_as_json,
)


class Rejected(Exception):
    """The model is not a trainable TFLite model; the message says why."""


def _zeros(spec: TensorSpec, batch: int = 1) -> np.ndarray[Any, Any]:
    shape = tuple(batch if d < 0 else d for d in spec.shape)
    if spec.dtype == "string":
        return np.full(shape, b"", dtype=object)
    return np.zeros(shape, dtype=numpy_dtype(spec.dtype))


def _check_checkpoint_signature(sigs: Signatures, key: str) -> None:
    inputs = list(sigs[key].inputs.values())
    if len(inputs) != 1 or inputs[0].dtype != "string" or inputs[0].shape != ():
        got = ", ".join(f"'{t.name}' {list(t.shape)} {t.dtype}" for t in inputs) or "none"
        raise Rejected(f"signature '{key}' must take one scalar string (the checkpoint path); "
                       f"it takes {got}")


def smoke(model: bytes) -> tuple[Signatures, Any]:
    """Load the model, check its signatures, and run each one once; the signatures and the
    interpreter."""
    try:
        interpreter = load_interpreter(model)
        sigs = read_signatures(interpreter)
    except Exception as exc:  # noqa: BLE001 - the verifier raises several types
        raise Rejected(f"not a loadable TFLite flatbuffer: {type(exc).__name__}: {exc}") from None
    missing = [k for k in REQUIRED_SIGNATURES if k not in sigs]
    if missing:
        have = ", ".join(sorted(sigs)) or "none"
        raise Rejected(f"missing required signature(s): {', '.join(missing)} (it has: {have})")
    for key in CHECKPOINT_SIGNATURES:
        _check_checkpoint_signature(sigs, key)
    order = ["train", "infer"] + sorted(set(sigs) - set(REQUIRED_SIGNATURES))
    for key in order:
        inputs = {n: _zeros(t) for n, t in sigs[key].inputs.items()}
        _run(interpreter, key, inputs)
    with tempfile.TemporaryDirectory(prefix="fleetlite-probe-") as tmp:
        path = Path(tmp) / "smoke.ckpt"
        for key in CHECKPOINT_SIGNATURES:
            name = next(iter(sigs[key].inputs))
            _run(interpreter, key, {name: np.array(str(path).encode())})
            if key == "save" and not path.exists():
                raise Rejected("signature 'save' ran but wrote no checkpoint file")
    return sigs, interpreter


TIMED_BATCH = 32
TIMED_STEPS = 15


def train_ms_per_example(interpreter: Any, sigs: Signatures) -> float | None:
    """The train signature's time per example: the median of a short run of steps at one
    batch size (the model's fixed batch, else 32), after warm-up steps. Stored with the
    model, so a fleet's virtual timeline is the same on every run."""
    spec = sigs["train"]
    dims = {t.shape[0] for t in spec.inputs.values() if t.shape}
    batch = TIMED_BATCH if -1 in dims or not dims else min(dims)
    inputs = {n: _zeros(t, batch) for n, t in spec.inputs.items()}
    runner = interpreter.get_signature_runner("train")
    try:
        for _ in range(3):
            runner(**inputs)
        took = []
        for _ in range(TIMED_STEPS):
            started = time.perf_counter()
            runner(**inputs)
            took.append(time.perf_counter() - started)
    except Exception:  # noqa: BLE001 - the smoke run passed; timing is best effort
        return None
    return float(np.median(took)) * 1000 / batch


def _run(interpreter: Any, key: str, inputs: dict[str, Any]) -> None:
    try:
        interpreter.get_signature_runner(key)(**inputs)
    except Exception as exc:  # noqa: BLE001
        raise Rejected(f"signature '{key}' failed its smoke run: {exc}") from None


def main() -> None:
    """Serve smoke runs until stdin closes."""
    # Keep the protocol channel private: anything native code prints goes to stderr.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    warm_up()  # import TensorFlow before the first model arrives
    stdin = sys.stdin.buffer
    while True:
        header = stdin.read(8)
        if len(header) < 8:
            return
        model = stdin.read(int.from_bytes(header, "big"))
        try:
            sigs, interpreter = smoke(model)
            reply: dict[str, Any] = {"ok": True, "signatures": signatures_as_json(sigs),
                                     "train_ms_per_example": train_ms_per_example(interpreter,
                                                                                  sigs)}
        except Rejected as exc:
            reply = {"ok": False, "reason": str(exc)}
        except Exception as exc:  # noqa: BLE001 - anything else is still a rejection
            reply = {"ok": False, "reason": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
