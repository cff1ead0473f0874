"""Faulty clients: which ones (seeded), and how their updates or labels are corrupted.

A client's update is its saved values minus the global ones it started from. `noise`
replaces it, per variable, by Gaussian noise of `scale` times its own standard deviation;
`sign_flip` negates it and multiplies it by `scale`; `label_flip` trains the client on
labels mapped c -> C-1-c. Functions return new arrays and never modify their inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.errors import InvalidInput
from app.federated.seeds import generator

KINDS = ("noise", "sign_flip", "label_flip")
# docs/api.md's example values; a spec names only what it changes.
DEFAULT_FRACTION = 0.2
DEFAULT_SCALE = 10.0


@dataclass(frozen=True)
class Faults:
    """A checked `faults` spec: the kind, the fraction of faulty clients and the scale."""

    kind: str
    fraction: float
    scale: float  # unused by label_flip


def make_faults(spec: Mapping[str, Any] | None) -> Faults | None:
    """The `faults` spec checked, defaults filled in, or None (InvalidInput names the field)."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise InvalidInput("faults: must be null or an object such as {\"kind\": \"noise\"}")
    unknown = sorted(set(spec) - {"kind", "fraction", "scale"})
    if unknown:
        raise InvalidInput(f"faults.{unknown[0]}: unknown field (faults take kind, fraction, "
                           "scale)")
    kind = spec.get("kind")
    if kind not in KINDS:
        got = "missing" if kind is None else f"unknown kind {kind!r}"
        raise InvalidInput(f"faults.kind: {got} (known: {', '.join(KINDS)})")
    fraction = spec.get("fraction", DEFAULT_FRACTION)
    if not (_is_number(fraction) and 0.0 <= fraction <= 1.0):
        raise InvalidInput(f"faults.fraction: must be a number in [0, 1], got {fraction!r}")
    scale = spec.get("scale", DEFAULT_SCALE)
    if not (_is_number(scale) and math.isfinite(scale) and scale >= 0.0):
        raise InvalidInput(f"faults.scale: must be a finite number >= 0, got {scale!r}")
    return Faults(kind, float(fraction), float(scale))


def faulty_clients(num_clients: int, fraction: float, seed: int) -> np.ndarray:
    """The faulty client ids, ascending: round(fraction * num_clients) of 0..num_clients-1."""
    count = math.floor(fraction * num_clients + 0.5)  # half up, as the partition's holdout
    chosen = generator(seed, "faulty").choice(num_clients, size=count, replace=False)
    return np.sort(chosen).astype(np.int64)


def noise_update(update: np.ndarray, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise shaped like `update`, of standard deviation scale * std(update)."""
    u = np.asarray(update)
    sigma = scale * float(np.std(u, dtype=np.float64))
    return np.asarray(rng.standard_normal(u.shape) * sigma).astype(u.dtype)


def sign_flip_update(update: np.ndarray, scale: float) -> np.ndarray:
    """The update negated and multiplied by `scale`."""
    u = np.asarray(update)
    return (u.astype(np.float64) * -scale).astype(u.dtype)


def corrupt(kind: str, saved: Mapping[str, np.ndarray], start: Mapping[str, np.ndarray], *,
            scale: float, seed: int, server_round: int, client_id: int) -> dict[str, np.ndarray]:
    """What a faulty client sends: start + the corrupted update, per variable (noise, sign_flip)."""
    if kind not in ("noise", "sign_flip"):
        raise ValueError(f"corrupt: {kind!r} corrupts no update (label_flip acts on labels)")
    # Drawn in sorted name order so the noise does not depend on the dicts' order.
    rng = generator(seed, "noise", server_round, client_id)
    out = {}
    for name in sorted(saved):
        base = np.asarray(start[name])
        update = np.asarray(saved[name], dtype=np.float64) - base.astype(np.float64)
        bad = noise_update(update, scale, rng) if kind == "noise" else sign_flip_update(
            update, scale)
        out[name] = (base.astype(np.float64) + bad).astype(np.asarray(saved[name]).dtype)
    return {name: out[name] for name in saved}


def flip_labels(labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """Labels mapped c -> C-1-c: one-hot or probability rows reversed, integer ids remapped."""
    y = np.asarray(labels)
    if y.ndim == 2 and not (y.shape[1] == 1 and y.dtype.kind in "iu"):
        if num_classes is not None and num_classes != y.shape[1]:
            raise ValueError(f"label rows have {y.shape[1]} columns, not {num_classes} classes")
        return np.ascontiguousarray(y[:, ::-1])
    if y.dtype.kind not in "iu":
        raise ValueError(f"labels must be rows or integer class ids, got {y.dtype}")
    if num_classes is None:
        raise ValueError("integer class ids need num_classes to be flipped")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"class ids must lie in [0, {num_classes})")
    return (num_classes - 1 - y).astype(y.dtype)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
