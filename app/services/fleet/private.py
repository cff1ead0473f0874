"""DP-FedAvg in a fleet's rounds: each completed update's delta on the shared variables is
clipped, the clipped deltas averaged with equal weights over clients_per_round and noised
(app/federated/privacy.py), and the strategy applies the noised mean as its pseudo-gradient;
each round is accounted for (app/services/privacy.py) with the devices that could be picked
and those picked, and a round that would pass `max_epsilon` is not run."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from app.federated.privacy import DPState, RoundPrivacy, clip_delta, privatize
from app.schemas.privacy import PrivacySpec
from app.services.privacy import RoundSample, dp_params, epsilon_curve

PREFIX = "dp/"  # the state arrays' slot, beside the strategy's and the personal sums


class FleetPrivacy:
    """One fleet's privacy across its rounds; owned by the fleet's driver."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = PrivacySpec.model_validate(dict(spec))
        self.params = dp_params(self.spec)
        self.state = DPState.initial(self.params)
        self.samples: list[RoundSample] = []

    @classmethod
    def of(cls, fleet_spec: Mapping[str, Any]) -> FleetPrivacy | None:
        """The fleet's privacy, or None when it has none."""
        raw = fleet_spec.get("privacy")
        return cls(raw) if raw else None

    def epsilon_after(self, sample: RoundSample) -> float:
        """Epsilon at the spec's delta once a round with this sample has run."""
        curve = epsilon_curve([*self.samples, sample], noise_multiplier=self.spec.noise_multiplier,
                              delta=self.spec.delta)
        return curve[-1]

    def over_budget(self, sample: RoundSample) -> bool:
        """Whether running this round would pass max_epsilon."""
        cap = self.spec.max_epsilon
        return cap is not None and self.epsilon_after(sample) > cap

    def mean_update(self, base: Mapping[str, np.ndarray],
                    updates: Sequence[tuple[Mapping[str, np.ndarray], int]], *, seed: int,
                    round: int, m: int) -> tuple[dict[str, np.ndarray], RoundPrivacy]:
        """The weights whose difference to `base` is the noised, clipped mean delta: what the
        strategy takes as its one input (each device counts once, whatever its examples)."""
        deltas = [{k: np.asarray(w[k], dtype=np.float64) - np.asarray(base[k], np.float64)
                   for k in base} for w, _ in updates]
        unclipped = None
        if self.params.placement == "client":  # clipped on the device, before the upload
            clipped = [clip_delta(d, self.state.clipping_norm) for d in deltas]
            deltas, unclipped = [c.delta for c in clipped], [c.unclipped for c in clipped]
        mean, self.state, info = privatize(deltas, self.state, self.params, seed=seed,
                                           round=round, m=m, unclipped=unclipped)
        return {k: np.asarray(base[k], dtype=np.float64) + mean[k] for k in base}, info

    def record(self, sample: RoundSample, info: RoundPrivacy | None,
               used_norm: float) -> dict[str, Any]:
        """The round's privacy figures for its row; the sample joins the accounting."""
        self.samples.append(sample)
        eps = epsilon_curve(self.samples, noise_multiplier=self.spec.noise_multiplier,
                            delta=self.spec.delta)[-1]
        out: dict[str, Any] = {"clipping_norm": used_norm,
                               "epsilon": eps if math.isfinite(eps) else None,
                               "delta": self.spec.delta, "eligible": sample.population,
                               "picked": sample.picked}
        if info is not None:
            out.update(unclipped_fraction=info.unclipped_fraction, noise_std=info.noise_std,
                       noise_multiplier=info.noise_multiplier)
        return out

    def state_arrays(self) -> dict[str, np.ndarray]:
        """What a resume needs, as arrays for the round's state blob."""
        return {f"{PREFIX}clipping_norm": np.array(self.state.clipping_norm, dtype=np.float64),
                f"{PREFIX}population": np.array([s.population for s in self.samples], np.int64),
                f"{PREFIX}picked": np.array([s.picked for s in self.samples], np.int64)}

    def load(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Continue from `state_arrays()`."""
        self.state = DPState(clipping_norm=float(arrays[f"{PREFIX}clipping_norm"]))
        self.samples = [RoundSample(int(p), int(k)) for p, k in zip(
            arrays[f"{PREFIX}population"], arrays[f"{PREFIX}picked"], strict=True)]


def split(arrays: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray],
                                                     dict[str, np.ndarray]]:
    """A state blob's arrays as (everything else, the privacy ones)."""
    rest = {k: v for k, v in arrays.items() if not k.startswith(PREFIX)}
    return rest, {k: v for k, v in arrays.items() if k.startswith(PREFIX)}
