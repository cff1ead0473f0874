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
from functools import cache, lru_cache

import dp_accounting
import numpy as np
from dp_accounting import NeighboringRelation, pld, rdp
from dp_accounting.rdp import rdp_privacy_accountant
from scipy import optimize

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

MAX_NOISE = 1e4  # the inverse looks no further (epsilon 0.01 over 10^6 rounds needs more)
MIN_NOISE = 1e-3
PLD_MAX_EPSILON = 30.0
ORDERS = rdp_privacy_accountant.DEFAULT_RDP_ORDERS


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


@lru_cache(maxsize=1024)
def _round_rdp(sample: RoundSample, noise_multiplier: float,
               sampling: Sampling) -> tuple[float, ...]:
    """One round's RDP at the default orders (cached: without replacement costs ~0.5 s)."""
    one = rdp.RdpAccountant(neighboring_relation=_relation(sampling))
    one.compose(round_event(sample, noise_multiplier, sampling))
    return tuple(float(x) for x in one.rdp)


def _rdp_epsilon(total: Sequence[float] | np.ndarray, delta: float) -> float:
    return float(rdp_privacy_accountant.compute_epsilon(ORDERS, total, delta)[0])


def epsilon_curve(samples: Sequence[RoundSample], *, noise_multiplier: float, delta: float,
                  sampling: Sampling = "without_replacement") -> list[float]:
    """RDP epsilon at delta after each round (inf when z is 0), for a fleet's Round rows."""
    if noise_multiplier == 0:
        return [math.inf] * len(samples)
    total = np.zeros(len(ORDERS))
    out = []
    for sample in samples:  # RDP adds up over rounds, whatever each round's event
        total = total + np.array(_round_rdp(sample, noise_multiplier, sampling))
        out.append(_rdp_epsilon(total, delta))
    return out


def epsilon(*, population: int, per_round: int, rounds: int, noise_multiplier: float,
            delta: float, sampling: Sampling = "without_replacement",
            accountant_name: AccountantName = "rdp") -> float:
    """Epsilon at delta after `rounds` identical rounds (inf when z is 0)."""
    if noise_multiplier == 0:
        return math.inf
    sample = RoundSample(population, per_round)
    by_rdp = _rdp_epsilon(rounds * np.array(_round_rdp(sample, noise_multiplier, sampling)),
                          delta)
    if accountant_name == "rdp":
        return by_rdp
    if sampling != "poisson":
        raise InvalidInput("accountant: pld applies to poisson sampling only "
                           "(dp-accounting has no PLD for sampling without replacement)")
    if not by_rdp <= PLD_MAX_EPSILON:  # PLD's distribution grows with the loss it spans
        raise InvalidInput(f"accountant: pld is offered while RDP's epsilon is at most "
                           f"{PLD_MAX_EPSILON:g}; this schedule's is {by_rdp:.4g}, use rdp")
    acc = pld.PLDAccountant(_relation(sampling))
    acc.compose(dp_accounting.SelfComposedDpEvent(
        round_event(sample, noise_multiplier, sampling), rounds))
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
    if accountant_name == "pld" and target_epsilon > PLD_MAX_EPSILON:
        raise InvalidInput(f"target_epsilon: pld is offered up to epsilon {PLD_MAX_EPSILON:g}")

    def eps(z: float) -> float:
        by_rdp = epsilon(population=population, per_round=per_round, rounds=rounds,
                         noise_multiplier=z, delta=delta, sampling=sampling)
        if accountant_name == "rdp" or by_rdp > PLD_MAX_EPSILON:  # over: PLD's is over target
            return by_rdp
        return epsilon(population=population, per_round=per_round, rounds=rounds,
                       noise_multiplier=z, delta=delta, sampling=sampling,
                       accountant_name=accountant_name)

    @cache
    def gap(log_z: float) -> float:  # log epsilon is close to linear in log z: Brent is quick
        e = eps(math.exp(log_z))
        return math.log(e / target_epsilon) if 0 < e < math.inf else (1e3 if e else -1e3)

    step, lo, hi = math.log(4), 0.0, 0.0  # in log z, where epsilon falls as z grows
    if gap(0.0) > 0:  # find gap(lo) > 0 >= gap(hi)
        while gap(hi) > 0:
            lo, hi = hi, hi + step
            if hi > math.log(MAX_NOISE):
                raise InvalidInput(f"target_epsilon: {target_epsilon} needs a noise multiplier "
                                   f"over {MAX_NOISE:g}")
    else:
        while gap(lo) <= 0:
            lo, hi = lo - step, lo
            if lo < math.log(MIN_NOISE):
                return ceil_3(math.exp(hi))
    root = optimize.brentq(gap, lo, hi, xtol=1e-7)
    z = ceil_3(math.exp(root - 1e-6))  # at or below the true root: nothing smaller passes
    while eps(z) > target_epsilon:
        z = next_3(z)
    return z


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
    if spec.max_epsilon is not None and spec.noise_multiplier == 0:
        raise InvalidInput("privacy.max_epsilon: with noise_multiplier 0 epsilon is infinite, "
                           "so no round fits the budget")
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
