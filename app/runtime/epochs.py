"""Epoch plans: which examples form each batch, reproducibly per (seed, epoch)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np


def steps_per_epoch(num_examples: int, batch_size: int, fixed_batch: bool) -> int:
    """Batches in one epoch; a fixed batch dimension drops the last partial batch."""
    full, rest = divmod(num_examples, batch_size)
    return full if fixed_batch else full + (1 if rest else 0)


def epoch_batches(arrays: dict[str, np.ndarray[Any, Any]], *, batch_size: int, epoch: int,
                  seed: int, shuffle: bool, fixed_batch: bool
                  ) -> Iterator[dict[str, np.ndarray[Any, Any]]]:
    """The batches of one epoch. The order depends only on (seed, epoch), so a job resumed
    at an epoch boundary sees exactly the batches an uninterrupted run would."""
    n = len(next(iter(arrays.values())))
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    count = steps_per_epoch(n, batch_size, fixed_batch)
    for i in range(count):
        idx = order[i * batch_size:(i + 1) * batch_size]
        yield {name: arr[idx] for name, arr in arrays.items()}
