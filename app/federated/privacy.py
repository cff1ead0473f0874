"""DP-FedAvg's round math: clip each delta, average, add Gaussian noise, adapt the norm.

McMahan et al. 2018 (arXiv 1710.06963) for the clipped, noised mean; Andrew et al. 2021
(arXiv 1905.03871) for the clipping norm that follows a quantile of the update norms. Pure
numpy: a round hands in the deltas of its counted updates (shared variables only, ordered by
client id) and gets back the noised mean delta, the next state and what it used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from app.federated.seeds import generator

Delta = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class DPParams:
    """The privacy spec as the round math needs it (built once from the fleet's spec)."""

    noise_multiplier: float
    clipping: Literal["fixed", "adaptive"]
    initial_norm: float  # the fixed norm, or adaptive clipping's first one
    target_unclipped_quantile: float = 0.5
    learning_rate: float = 0.2
    count_stddev: float | None = None  # None: m / 20, Andrew et al.'s default
    placement: Literal["server", "client"] = "server"


@dataclass(frozen=True)
class DPState:
    """What carries from one round to the next: the clipping norm (a float, exact in JSON)."""

    clipping_norm: float

    @classmethod
    def initial(cls, params: DPParams) -> DPState:
        """The state before round 1."""
        return cls(clipping_norm=float(params.initial_norm))

    def to_dict(self) -> dict[str, float]:
        """Plain JSON; `from_dict(to_dict())` is bit-identical (floats print round-trip)."""
        return {"clipping_norm": self.clipping_norm}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DPState:
        """The state persisted by `to_dict`."""
        return cls(clipping_norm=float(data["clipping_norm"]))


@dataclass(frozen=True)
class RoundPrivacy:
    """What a round's privatization used and released: for its Round row."""

    clipping_norm: float  # C this round (adaptive: before the update)
    unclipped_fraction: float  # b; noised when adaptive (it steers C), else a diagnostic
    noise_std: float  # per coordinate of the mean: z_delta * C / m
    noise_multiplier: float  # z, or z_delta with adaptive clipping


@dataclass(frozen=True)
class Clipped:
    """A delta clipped on the device: what it uploads, and the one bit adaptive clipping needs."""

    delta: dict[str, np.ndarray]
    norm: float  # before clipping
    unclipped: bool  # norm <= C


def global_norm(delta: Delta) -> float:
    """The L2 norm of all the delta's arrays flattened into one vector (float64)."""
    total = math.fsum(float(np.dot(a.ravel(), a.ravel()))
                      for a in (np.asarray(delta[k], dtype=np.float64) for k in sorted(delta)))
    return math.sqrt(total)


def clip_delta(delta: Delta, clipping_norm: float) -> Clipped:
    """Scale the delta down to L2 norm clipping_norm if it is longer (float64 arrays); a
    delta with NaN or Infinity has no direction to keep and becomes zeros (counted clipped)."""
    if not clipping_norm > 0:
        raise ValueError(f"clipping norm must be > 0, got {clipping_norm}")
    norm = global_norm(delta)
    if not math.isfinite(norm):  # a faulty device: zeros keep its sensitivity within C
        zeros = {k: np.zeros(np.shape(delta[k])) for k in sorted(delta)}
        return Clipped(delta=zeros, norm=math.inf, unclipped=False)
    unclipped = norm <= clipping_norm
    scale = 1.0 if unclipped else clipping_norm / norm
    out = {k: np.asarray(delta[k], dtype=np.float64) * scale for k in sorted(delta)}
    return Clipped(delta=out, norm=norm, unclipped=unclipped)


def count_stddev(params: DPParams, m: int) -> float:
    """Std of the noise on the unclipped count: the spec's, or m / 20 (Andrew et al.)."""
    if params.clipping != "adaptive":
        return 0.0
    return m / 20 if params.count_stddev is None else float(params.count_stddev)


def delta_noise_multiplier(noise_multiplier: float, count_std: float) -> float:
    """z_delta = (z^-2 - (2 sigma_b)^-2)^(-1/2): the deltas' share of z when the unclipped
    count is released too (Andrew et al., section 3.1); 0 when z is 0; ValueError when not
    positive."""
    if noise_multiplier == 0:
        return 0.0
    if count_std == 0:
        raise ValueError("count_stddev is 0: the count of unclipped updates would not be "
                         "private; with noise_multiplier > 0 it must be > 0")
    rest = noise_multiplier ** -2 - (2 * count_std) ** -2
    if not rest > 0:
        raise ValueError(
            f"noise_multiplier {noise_multiplier} needs count_stddev > {noise_multiplier / 2} "
            f"(got {count_std}): (z^-2 - (2*count_stddev)^-2) must be positive")
    return float(rest ** -0.5)


def noise_multiplier_for(params: DPParams, m: int) -> float:
    """The multiplier of the noise on the deltas: z (fixed clipping) or z_delta (adaptive)."""
    if params.clipping == "fixed":
        return float(params.noise_multiplier)
    return delta_noise_multiplier(params.noise_multiplier, count_stddev(params, m))


def next_clipping_norm(norm: float, unclipped_fraction: float, params: DPParams) -> float:
    """Andrew et al.'s geometric step: C * exp(-lr * (b - target_unclipped_quantile))."""
    return float(norm * math.exp(-params.learning_rate
                                 * (unclipped_fraction - params.target_unclipped_quantile)))


def privatize(
    deltas: Sequence[Delta],
    state: DPState,
    params: DPParams,
    *,
    seed: int,
    round: int,
    m: int,
    unclipped: Sequence[bool] | None = None,
) -> tuple[dict[str, np.ndarray], DPState, RoundPrivacy]:
    """The noised mean delta (float64), the next state and what the round used. Deltas come
    ordered by client id; with placement "client" they were clipped by `clip_delta` on the
    device and `unclipped` carries their bits."""
    if m < 1:
        raise ValueError(f"m (clients_per_round) must be >= 1, got {m}")
    if not deltas:
        raise ValueError("no updates to privatize")
    names = sorted(deltas[0])
    if any(sorted(d) != names for d in deltas):
        raise ValueError("every delta must carry the same variable names")
    norm = state.clipping_norm
    z_delta = noise_multiplier_for(params, m)  # first: a bad spec fails before any work
    if unclipped is None:
        clipped = [clip_delta(d, norm) for d in deltas]
        bits = [c.unclipped for c in clipped]
        arrays = [c.delta for c in clipped]
    else:
        if len(unclipped) != len(deltas):
            raise ValueError(f"{len(unclipped)} unclipped bits for {len(deltas)} deltas")
        over = [i for i, d in enumerate(deltas) if not global_norm(d) <= norm * (1 + 1e-9)]
        if over:
            raise ValueError(f"deltas {over} exceed the clipping norm {norm}: not clipped "
                             "on the device")
        bits = [bool(b) for b in unclipped]
        arrays = [{k: np.asarray(d[k], dtype=np.float64) for k in names} for d in deltas]
    # fixed denominator m (McMahan et al.'s estimator): each device moves the sum by at most
    # C, so the mean by C/m, which is what noise of std z*C/m covers even when fewer report
    mean: dict[str, np.ndarray] = {}
    std = z_delta * norm / m
    rng = generator(seed, "dp-noise", round)
    for k in names:  # sorted: the draw order is part of the result
        total = arrays[0][k].copy()
        for a in arrays[1:]:  # in the caller's (client id) order: the sum is bit-stable
            total += a[k]
        mean[k] = total / m
        if std > 0:
            mean[k] += rng.normal(0.0, std, size=mean[k].shape)
    # released as noised when adaptive (it steers C); with fixed clipping a diagnostic only
    fraction = sum(bits) / m
    new_state = state
    if params.clipping == "adaptive":
        sigma_b = count_stddev(params, m)
        if sigma_b > 0:  # its own stream: switching adaptive on leaves the delta noise alone
            fraction += float(generator(seed, "dp-count", round).normal(0.0, sigma_b)) / m
        new_state = DPState(clipping_norm=next_clipping_norm(norm, fraction, params))
    info = RoundPrivacy(clipping_norm=norm, unclipped_fraction=fraction, noise_std=std,
                        noise_multiplier=z_delta)
    return mean, new_state, info
