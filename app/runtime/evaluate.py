"""Accuracy: run a model's infer signature over examples in batches, and count the
examples whose highest-scoring class is their label."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Arrays = dict[str, np.ndarray[Any, Any]]
EVAL_BATCH = 1024  # examples per infer call when the batch dimension is open


def predict(run: Callable[[Arrays], dict[str, Any]], inputs: Arrays, output: str,
            fixed_batch: int | None = None) -> np.ndarray:
    """The predicted class of every example: argmax of `output`, in batches (a fixed batch
    dimension gets its last batch padded with zeros, and the padding dropped)."""
    n = len(next(iter(inputs.values())))
    batch = fixed_batch or EVAL_BATCH
    out = np.empty(n, dtype=np.int64)
    for lo in range(0, n, batch):
        chunk = {k: v[lo:lo + batch] for k, v in inputs.items()}
        got = len(next(iter(chunk.values())))
        if fixed_batch is not None and got < fixed_batch:
            chunk = {k: _pad(v, fixed_batch) for k, v in chunk.items()}
        scores = np.asarray(run(chunk)[output])
        out[lo:lo + got] = np.argmax(scores.reshape(len(scores), -1), axis=1)[:got]
    return out


def _pad(arr: np.ndarray, size: int) -> np.ndarray:
    pad = np.zeros((size - len(arr), *arr.shape[1:]), dtype=arr.dtype)
    return np.concatenate([arr, pad])


def quantiles(values: np.ndarray) -> dict[str, float] | None:
    """mean, p10, p50, p90 of a distribution over clients (None when there is none)."""
    if values.size == 0:
        return None
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return {"mean": float(values.mean()), "p10": float(p10), "p50": float(p50),
            "p90": float(p90)}
