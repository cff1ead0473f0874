"""The server rules of asynchronous fleets: staleness weights, FedBuff and FedAsync, exactly.

tau is the staleness of an arrival: the server's version when it arrives minus the version
its device started from. Staleness weights s(tau) (Xie et al. 2019, "Asynchronous
Federated Optimization", section 5.2; FedBuff uses the polynomial one with exponent 0.5):
- polynomial: s = (1 + tau) ** (-exponent)
- constant: s = 1
- hinge: s = 1 if tau <= b else 1 / (a * (tau - b) + 1)

FedBuff (Nguyen et al. 2022, arXiv 2106.06639, Algorithm 1): an arrival that started from
x_t sends delta = y - x_t; the server adds s(tau) * delta to its buffer; after K arrivals
x <- x + server_lr * buffer / K and the buffer is cleared. FedAsync (Xie et al. 2019,
Algorithm 1): every arrival gives x <- (1 - alpha) * x + alpha * y, alpha = mixing * s(tau).

Arithmetic as app/federated/strategies.py: float64 throughout, in the order written above
(`buffer += s * (y - x_t)`, then `x + (server_lr * buffer) / K`), cast back to the dtype of
the current global value; the buffer is kept in float64 and is the only state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from app.federated.strategies import _cast

Arrays = Mapping[str, np.ndarray]
Weights = dict[str, np.ndarray]


@dataclass(frozen=True)
class Staleness:
    """A staleness weight s(tau); `kind` is "polynomial", "constant" or "hinge"."""

    kind: str = "polynomial"
    exponent: float = 0.5  # polynomial
    a: float = 10.0  # hinge
    b: float = 4.0  # hinge

    def __post_init__(self) -> None:
        if self.kind not in ("polynomial", "constant", "hinge"):
            raise ValueError(f"unknown staleness kind {self.kind!r}")
        if not (math.isfinite(self.exponent) and self.exponent >= 0):
            raise ValueError("staleness exponent must be a finite number >= 0")
        if not (math.isfinite(self.a) and self.a > 0 and math.isfinite(self.b) and self.b >= 0):
            raise ValueError("hinge staleness needs a > 0 and b >= 0")

    def __call__(self, tau: int) -> float:
        """The weight of an update tau versions stale (tau >= 0)."""
        if tau < 0:
            raise ValueError(f"staleness must be >= 0, got {tau}")
        if self.kind == "polynomial":
            return float((1.0 + tau) ** -self.exponent)
        if self.kind == "hinge" and tau > self.b:
            return 1.0 / (self.a * (tau - self.b) + 1.0)
        return 1.0


def staleness_from_spec(spec: Mapping[str, object] | None) -> Staleness:
    """A Staleness from the spec's {"kind": ..., parameters} (checked by AsyncSpec)."""
    spec = dict(spec or {"kind": "polynomial"})
    return Staleness(**{k: (v if k == "kind" else float(v))  # type: ignore[arg-type]
                        for k, v in spec.items()})


class FedBuff:
    """A buffer of staleness-weighted deltas, applied as one server step every K arrivals."""

    name = "fedbuff"

    def __init__(self, *, buffer_size: int, server_lr: float = 1.0,
                 staleness: Staleness | None = None) -> None:
        if buffer_size < 1 or not (math.isfinite(server_lr) and server_lr > 0):
            raise ValueError("need buffer_size >= 1 and a finite server_lr > 0")
        self.k, self.server_lr = int(buffer_size), float(server_lr)
        self.staleness = staleness or Staleness()
        self._buffer: dict[str, np.ndarray] = {}
        self.count = 0  # arrivals in the buffer

    @property
    def full(self) -> bool:
        """Whether K arrivals are buffered, so `step` is due."""
        return self.count >= self.k

    def add(self, start: Arrays, trained: Arrays, tau: int) -> None:
        """Buffer one arrival: its start weights x_t, its trained weights y, its staleness."""
        _check(start, trained)
        if self.full:
            raise ValueError(f"the buffer already holds {self.k} arrivals: call step first")
        s = self.staleness(tau)
        for name, y in trained.items():
            delta = np.asarray(y, dtype=np.float64) - np.asarray(start[name], dtype=np.float64)
            if name in self._buffer:
                self._buffer[name] += s * delta
            else:
                self._buffer[name] = s * delta
        self.count += 1

    def step(self, current: Arrays) -> Weights:
        """x + server_lr * buffer / K from the current global x; clears the buffer."""
        if not self.full:
            raise ValueError(f"{self.count} of {self.k} arrivals buffered: not yet due")
        _check(current, self._buffer)
        out = {k: np.asarray(v, dtype=np.float64) + self.server_lr * self._buffer[k] / self.k
               for k, v in current.items()}
        self._buffer, self.count = {}, 0
        return _cast(out, current)

    def state(self) -> Weights:
        """The buffer as "buffer/<variable>" arrays and "count" (empty: nothing buffered)."""
        if not self.count:
            return {}
        out = {f"buffer/{k}": v.copy() for k, v in self._buffer.items()}
        out["count"] = np.array(self.count, dtype=np.int64)
        return out

    def load_state(self, state: Arrays) -> None:
        """Continue from what `state()` returned."""
        buffer, count = {}, 0
        for key, value in state.items():
            if key == "count":
                count = int(value)
            elif key.startswith("buffer/") and len(key) > len("buffer/"):
                buffer[key[len("buffer/"):]] = np.array(value, dtype=np.float64)
            else:
                raise ValueError(f"fedbuff: unexpected state array {key!r}")
        if count > self.k or (count == 0) != (not buffer):
            raise ValueError(f"fedbuff: inconsistent state ({count} arrivals, "
                             f"{len(buffer)} arrays)")
        self._buffer, self.count = buffer, count


class FedAsync:
    """Every arrival mixed into the global at once with weight mixing * s(tau)."""

    name = "fedasync"

    def __init__(self, *, mixing: float = 0.6, staleness: Staleness | None = None) -> None:
        if not (math.isfinite(mixing) and 0.0 < mixing <= 1.0):
            raise ValueError("mixing must be in (0, 1]")
        self.mixing = float(mixing)
        self.staleness = staleness or Staleness()

    def alpha(self, tau: int) -> float:
        """The mixing weight of an arrival tau versions stale."""
        return self.mixing * self.staleness(tau)

    def apply(self, current: Arrays, trained: Arrays, tau: int) -> Weights:
        """(1 - alpha) * x + alpha * y from the current global x and the arrival's y."""
        _check(current, trained)
        alpha = self.alpha(tau)
        out = {k: (1.0 - alpha) * np.asarray(v, dtype=np.float64)
               + alpha * np.asarray(trained[k], dtype=np.float64) for k, v in current.items()}
        return _cast(out, current)


def _check(expected: Arrays, got: Arrays) -> None:
    if expected.keys() != got.keys():
        raise ValueError(f"variables {sorted(got)} != {sorted(expected)}")
    for k, v in got.items():
        if np.shape(v) != np.shape(expected[k]):
            raise ValueError(f"{k}: shape {np.shape(v)} != {np.shape(expected[k])}")


def make_rule(spec: Mapping[str, Any]) -> FedBuff | FedAsync:
    """The server rule of a checked `async` spec with its defaults filled (AsyncSpec.to_dict)."""
    staleness = staleness_from_spec(spec["staleness"])
    if spec["algorithm"] == "fedbuff":
        return FedBuff(buffer_size=int(spec["buffer_size"]), server_lr=float(spec["server_lr"]),
                       staleness=staleness)
    if spec["algorithm"] == "fedasync":
        return FedAsync(mixing=float(spec["mixing"]), staleness=staleness)
    raise ValueError(f"unknown async algorithm {spec['algorithm']!r}")


class Arrival(Protocol):
    """What the rules need of an arrival (async_plan.Ended has it, frozen: read-only)."""

    @property
    def client_id(self) -> int: ...
    @property
    def start_version(self) -> int: ...
    @property
    def staleness(self) -> int: ...


def server_update(rule: FedBuff | FedAsync, current: Arrays, arrivals: Sequence[Arrival],
                  start_weights: Mapping[int, Arrays], trained: Mapping[int, Arrays]) -> Weights:
    """The global after applying `arrivals` in order (an AsyncPlan's `arrivals`).

    start_weights: version -> the global weights of that version (FedBuff's x_t); trained:
    client id -> the weights its update ended with. FedBuff steps when its buffer fills
    (at the last arrival of a plan); until then the global stays as it is.
    """
    out = {k: np.array(v, copy=True) for k, v in current.items()}
    for a in arrivals:
        if isinstance(rule, FedAsync):
            out = rule.apply(out, trained[a.client_id], a.staleness)
            continue
        rule.add(start_weights[a.start_version], trained[a.client_id], a.staleness)
        if rule.full:
            out = rule.step(out)
    return out
