"""Privacy accounting for DP-FedAvg (dp-accounting), the planner, and the spec's checks.

Each round is one sampled Gaussian mechanism on the sum of clipped updates. Poisson
sampling is accounted under add-or-remove-one neighbours (the sum moves by at most C, so
the event's multiplier is z); m of N without replacement under replace-one, the relation
its analysis (Wang, Balle, Kasiviswanathan 2019) needs, where swapping one device's data
moves the sum by up to 2C, so the event's multiplier is z/2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import dp_accounting
from dp_accounting import NeighboringRelation, pld, rdp
from dp_accounting.rdp import rdp_privacy_accountant

from app.errors import InvalidInput
from app.federated.privacy import DPParams, count_stddev, delta_noise_multiplier
from app.schemas.privacy import (
    AccountantName,
    AdaptiveClipping,
    EpsilonAnswer,
    EpsilonQuery,
    PrivacySpec,
    Sampling,
    check_strategy,
)

MAX_NOISE = 2.0**20  # the inverse gives up past it: no schedule needs more


@dataclass(frozen=True)
class RoundSample:
    """Who could be picked in one round: `picked` of `population` (over-commitment included)."""

    population: int
    picked: int


def event_noise_multiplier(noise_multiplier: float, sampling: Sampling) -> float:
    """The Gaussian event's multiplier: z under add-or-remove, z/2 under replace-one."""
    # dp-accounting 0.6 reads a GaussianDpEvent's multiplier as std over C and feeds it to
    # the replace-one bound unchanged (google/differential-privacy issue 378, PR 464 open):
    # halve it here; an upgrade that scales inside the library must drop this halving
    # (test_epsilon_of_everyone_every_round_is_the_gaussian_of_sensitivity_2c catches it).
    return noise_multiplier / 2 if sampling == "without_replacement" else noise_multiplier


def round_event(sample: RoundSample, noise_multiplier: float,
                sampling: Sampling) -> dp_accounting.DpEvent:
    """One round as a dp-accounting event."""
    gaussian = dp_accounting.GaussianDpEvent(event_noise_multiplier(noise_multiplier, sampling))
    if sampling == "poisson":
        return dp_accounting.PoissonSampledDpEvent(sample.picked / sample.population, gaussian)
    return dp_accounting.SampledWithoutReplacementDpEvent(sample.population, sample.picked,
                                                          gaussian)


def _relation(sampling: Sampling) -> NeighboringRelation:
    if sampling == "without_replacement":
        return NeighboringRelation.REPLACE_ONE
    return NeighboringRelation.ADD_OR_REMOVE_ONE


def accountant(sampling: Sampling, name: AccountantName = "rdp") -> dp_accounting.PrivacyAccountant:
    """A fresh accountant of the kind and neighbouring relation the sampling needs."""
    if name == "pld":
        if sampling != "poisson":
            raise InvalidInput("accountant: pld applies to poisson sampling only "
                               "(dp-accounting has no PLD for sampling without replacement)")
        return pld.PLDAccountant(_relation(sampling))
    return rdp.RdpAccountant(neighboring_relation=_relation(sampling))


@lru_cache(maxsize=256)
def _round_rdp(sample: RoundSample, noise_multiplier: float,
               sampling: Sampling) -> tuple[float, ...]:
    """One round's RDP at the default orders (cached: without replacement costs ~0.4 s)."""
    one = rdp.RdpAccountant(neighboring_relation=_relation(sampling))
    one.compose(round_event(sample, noise_multiplier, sampling))
    return tuple(float(x) for x in one.rdp)


def epsilon_curve(samples: Sequence[RoundSample], *, noise_multiplier: float, delta: float,
                  sampling: Sampling = "without_replacement") -> list[float]:
    """RDP epsilon at delta after each round (inf when z is 0), for a fleet's Round rows."""
    if noise_multiplier == 0:
        return [math.inf] * len(samples)
    orders = rdp_privacy_accountant.DEFAULT_RDP_ORDERS
    total = [0.0] * len(orders)
    out = []
    for sample in samples:
        total = [a + b for a, b in zip(total, _round_rdp(sample, noise_multiplier, sampling),
                                       strict=True)]
        out.append(float(rdp_privacy_accountant.compute_epsilon(orders, total, delta)[0]))
    return out


def epsilon(*, population: int, per_round: int, rounds: int, noise_multiplier: float,
            delta: float, sampling: Sampling = "without_replacement",
            accountant_name: AccountantName = "rdp") -> float:
    """Epsilon at delta after `rounds` identical rounds (inf when z is 0)."""
    if noise_multiplier == 0:
        return math.inf
    one = round_event(RoundSample(population, per_round), noise_multiplier, sampling)
    acc = accountant(sampling, accountant_name)
    acc.compose(dp_accounting.SelfComposedDpEvent(one, rounds))
    return float(acc.get_epsilon(delta))


def ceil_3(x: float) -> float:
    """x rounded up to 3 significant digits."""
    step = 10.0 ** (math.floor(math.log10(x)) - 2)
    return float(f"{math.ceil(round(x / step, 9)) * step:.3g}")


def next_3(x: float) -> float:
    """The next number of 3 significant digits above x (itself of 3 significant digits)."""
    step = 10.0 ** (math.floor(math.log10(x)) - 2)
    return float(f"{x + step:.3g}")


def noise_for_epsilon(*, population: int, per_round: int, rounds: int, target_epsilon: float,
                      delta: float, sampling: Sampling = "without_replacement",
                      accountant_name: AccountantName = "rdp") -> float:
    """The smallest noise multiplier of 3 significant digits whose epsilon <= target."""
    def eps(z: float) -> float:
        return epsilon(population=population, per_round=per_round, rounds=rounds,
                       noise_multiplier=z, delta=delta, sampling=sampling,
                       accountant_name=accountant_name)

    lo, hi = 0.0, 1.0  # epsilon falls as z grows: bracket eps(lo) > target >= eps(hi)
    while eps(hi) > target_epsilon:
        lo, hi = hi, hi * 2
        if hi > MAX_NOISE:
            raise InvalidInput(f"target_epsilon: {target_epsilon} needs a noise multiplier "
                               f"over {MAX_NOISE:g}")
    if lo == 0.0:
        lo = hi / 2
        while eps(lo) <= target_epsilon:
            lo, hi = lo / 2, lo
            if lo < 1e-6:
                return ceil_3(hi)
    while hi - lo > 10.0 ** (math.floor(math.log10(hi)) - 2):  # to one 3-digit step
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if eps(mid) > target_epsilon else (lo, mid)
    z = ceil_3(lo)  # lo fails, so nothing of 3 digits below ceil_3(lo) can pass
    while z < hi and eps(z) > target_epsilon:
        z = next_3(z)
    return min(z, ceil_3(hi))


def plan(query: EpsilonQuery) -> EpsilonAnswer:
    """The planner: epsilon for a noise multiplier, or the noise multiplier for an epsilon."""
    def eps_of(z: float) -> float:
        return epsilon(population=query.population, per_round=query.per_round,
                       rounds=query.rounds, noise_multiplier=z, delta=query.delta,
                       sampling=query.sampling, accountant_name=query.accountant)

    z = query.noise_multiplier
    if z is None:
        assert query.target_epsilon is not None  # the schema asks for exactly one
        z = noise_for_epsilon(population=query.population, per_round=query.per_round,
                              rounds=query.rounds, target_epsilon=query.target_epsilon,
                              delta=query.delta, sampling=query.sampling,
                              accountant_name=query.accountant)
    eps = eps_of(z)
    if not math.isfinite(eps):
        raise InvalidInput(f"noise_multiplier: {z} gives no finite epsilon at delta "
                           f"{query.delta} over {query.rounds} rounds")
    return EpsilonAnswer(
        epsilon=eps, noise_multiplier=z, delta=query.delta, population=query.population,
        per_round=query.per_round, rounds=query.rounds, sampling=query.sampling,
        sampling_probability=query.per_round / query.population, accountant=query.accountant,
        neighbouring="replace_one" if query.sampling == "without_replacement"
        else "add_or_remove_one",
        event_noise_multiplier=event_noise_multiplier(z, query.sampling))


def dp_params(spec: PrivacySpec) -> DPParams:
    """The spec as the round math takes it."""
    c = spec.clipping
    if isinstance(c, AdaptiveClipping):
        return DPParams(noise_multiplier=spec.noise_multiplier, clipping="adaptive",
                        initial_norm=c.initial_norm,
                        target_unclipped_quantile=c.target_unclipped_quantile,
                        learning_rate=c.learning_rate, count_stddev=c.count_stddev,
                        placement=spec.placement)
    return DPParams(noise_multiplier=spec.noise_multiplier, clipping="fixed",
                    initial_norm=c.norm, placement=spec.placement)


def check_spec(spec: PrivacySpec, *, clients_per_round: int, strategy_name: str) -> None:
    """422 naming the field when the spec cannot run with this strategy and round size."""
    check_strategy(strategy_name)
    params = dp_params(spec)
    if params.clipping != "adaptive":
        return
    sigma_b = count_stddev(params, clients_per_round)
    try:
        delta_noise_multiplier(params.noise_multiplier, sigma_b)
    except ValueError as exc:
        field = "count_stddev" if params.count_stddev is not None else \
            "count_stddev (default clients_per_round / 20)"
        raise InvalidInput(f"privacy.clipping.{field}: {exc}") from None
