"""Privacy accounting: the figures dp-accounting gives for the same events, and the inverse."""

from __future__ import annotations

import math
from typing import Any

import dp_accounting
import pytest
from dp_accounting import NeighboringRelation, pld, rdp

from app.errors import InvalidInput
from app.federated.privacy import DPParams
from app.schemas.privacy import EpsilonQuery, PrivacySpec
from app.services.privacy import (
    RoundSample,
    ceil_3,
    check_spec,
    dp_params,
    epsilon,
    epsilon_curve,
    next_3,
    noise_for_epsilon,
    plan,
)

MNIST: dict[str, Any] = {"population": 60000, "per_round": 150, "rounds": 6000, "delta": 1e-5}


def test_epsilon_gives_tensorflow_privacys_figure() -> None:
    eps = epsilon(noise_multiplier=1.3, sampling="poisson", **MNIST)
    assert eps == pytest.approx(0.7242234026, abs=1e-10)
    assert f"{eps:.3f}" == "0.724"


def test_epsilon_equals_the_librarys_for_poisson_rdp_and_pld() -> None:
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(150 / 60000, dp_accounting.GaussianDpEvent(1.3)),
        6000)
    want_rdp = rdp.RdpAccountant().compose(event).get_epsilon(1e-5)
    want_pld = pld.PLDAccountant().compose(event).get_epsilon(1e-5)
    assert epsilon(noise_multiplier=1.3, sampling="poisson", **MNIST) == want_rdp
    assert epsilon(noise_multiplier=1.3, sampling="poisson", accountant_name="pld",
                   **MNIST) == want_pld
    assert want_pld < want_rdp  # PLD is the tighter of the two


def test_epsilon_without_replacement_is_replace_one_with_half_the_multiplier() -> None:
    # swapping one device's data moves the clipped sum by up to 2C: the event's z is z/2
    event = dp_accounting.SelfComposedDpEvent(dp_accounting.SampledWithoutReplacementDpEvent(
        1000, 50, dp_accounting.GaussianDpEvent(0.5)), 200)
    want = rdp.RdpAccountant(neighboring_relation=NeighboringRelation.REPLACE_ONE)\
        .compose(event).get_epsilon(1e-5)
    assert epsilon(population=1000, per_round=50, rounds=200, noise_multiplier=1.0,
                   delta=1e-5, sampling="without_replacement") == want


def test_epsilon_of_everyone_every_round_is_the_gaussian_of_sensitivity_2c() -> None:
    plain = rdp.RdpAccountant().compose(dp_accounting.SelfComposedDpEvent(
        dp_accounting.GaussianDpEvent(2.0), 30)).get_epsilon(1e-5)
    assert epsilon(population=10, per_round=10, rounds=30, noise_multiplier=4.0, delta=1e-5,
                   sampling="without_replacement") == pytest.approx(plain, rel=1e-12)


def test_epsilon_curve_composes_rounds_of_different_pools() -> None:
    samples = [RoundSample(100, 10), RoundSample(100, 10), RoundSample(40, 12)]
    curve = epsilon_curve(samples, noise_multiplier=1.5, delta=1e-5)
    acc = rdp.RdpAccountant(neighboring_relation=NeighboringRelation.REPLACE_ONE)
    for got, s in zip(curve, samples, strict=True):
        acc.compose(dp_accounting.SampledWithoutReplacementDpEvent(
            s.population, s.picked, dp_accounting.GaussianDpEvent(0.75)))
        assert got == pytest.approx(acc.get_epsilon(1e-5), rel=1e-12)
    assert curve == sorted(curve)
    assert curve[1] == pytest.approx(epsilon(population=100, per_round=10, rounds=2,
                                             noise_multiplier=1.5, delta=1e-5), rel=1e-12)


def test_epsilon_curve_charges_a_smaller_pool_more() -> None:
    # a round that can pick from fewer devices samples each of them more often
    full = epsilon_curve([RoundSample(100, 10)] * 5, noise_multiplier=1.0, delta=1e-5)
    night = epsilon_curve([RoundSample(100, 10)] * 4 + [RoundSample(30, 10)],
                          noise_multiplier=1.0, delta=1e-5)
    assert night[-1] > full[-1]


def test_epsilon_is_infinite_without_noise() -> None:
    assert epsilon_curve([RoundSample(10, 5)], noise_multiplier=0.0, delta=1e-5) == [math.inf]
    assert epsilon(noise_multiplier=0.0, sampling="poisson", **MNIST) == math.inf


def test_ceil_3_and_next_3_work_on_three_significant_digits() -> None:
    assert [ceil_3(x) for x in (1.2301, 1.23, 0.0123401, 987.01, 9.991)] == \
        [1.24, 1.23, 0.0124, 988.0, 10.0]
    assert [next_3(x) for x in (1.23, 9.99, 0.0999)] == [1.24, 10.0, 0.1]


def _step(z: float) -> float:
    return 10.0 ** (math.floor(math.log10(z)) - 2)


@pytest.mark.parametrize(("sampling", "target", "population", "per_round", "rounds"), [
    ("poisson", 0.725, 60000, 150, 6000),
    ("poisson", 8.0, 1000, 100, 50),
    ("without_replacement", 5.0, 500, 20, 100),
])
def test_noise_for_epsilon_is_the_smallest_of_three_digits(
        sampling: str, target: float, population: int, per_round: int, rounds: int) -> None:
    kw: dict[str, Any] = {"population": population, "per_round": per_round, "rounds": rounds,
                          "delta": 1e-5, "sampling": sampling}
    z = noise_for_epsilon(target_epsilon=target, **kw)
    assert z == float(f"{z:.3g}")
    assert epsilon(noise_multiplier=z, **kw) <= target
    assert epsilon(noise_multiplier=z - _step(z), **kw) > target


def test_noise_for_epsilon_finds_1_3_for_the_mnist_figure() -> None:
    assert noise_for_epsilon(target_epsilon=0.725, sampling="poisson", **MNIST) == 1.3


def test_plan_answers_epsilon_and_the_relation() -> None:
    answer = plan(EpsilonQuery(noise_multiplier=1.3, sampling="poisson", **MNIST))
    assert round(answer.epsilon, 3) == 0.724 and answer.neighbouring == "add_or_remove_one"
    assert answer.sampling_probability == 0.0025 and answer.event_noise_multiplier == 1.3


def test_plan_refuses_pld_without_replacement() -> None:
    with pytest.raises(InvalidInput, match="accountant: pld"):
        plan(EpsilonQuery(noise_multiplier=1.0, sampling="without_replacement",
                          accountant="pld", population=10, per_round=5, rounds=1))


def _spec(clipping: dict[str, object], z: float = 1.0) -> PrivacySpec:
    return PrivacySpec.model_validate({"noise_multiplier": z, "clipping": clipping})


def test_dp_params_carries_the_spec() -> None:
    assert dp_params(_spec({"kind": "fixed", "norm": 2.0})) == DPParams(
        noise_multiplier=1.0, clipping="fixed", initial_norm=2.0)
    adaptive = dp_params(_spec({"kind": "adaptive", "count_stddev": 3.0}))
    assert adaptive.initial_norm == 0.1 and adaptive.target_unclipped_quantile == 0.5
    assert adaptive.learning_rate == 0.2 and adaptive.count_stddev == 3.0


@pytest.mark.parametrize("strategy", ["fedmedian", "fedtrimmedavg"])
def test_check_spec_refuses_robust_strategies(strategy: str) -> None:
    with pytest.raises(InvalidInput, match=f"privacy: strategy '{strategy}'.*sensitivity"):
        check_spec(_spec({"kind": "fixed", "norm": 1.0}), clients_per_round=10,
                   strategy_name=strategy)


def test_check_spec_refuses_too_little_count_noise() -> None:
    # z = 1 needs count_stddev > 0.5; the default m/20 is 0.5 at m = 10
    with pytest.raises(InvalidInput, match=r"privacy\.clipping\.count_stddev"):
        check_spec(_spec({"kind": "adaptive"}), clients_per_round=10, strategy_name="fedavg")
    check_spec(_spec({"kind": "adaptive"}), clients_per_round=11, strategy_name="fedavg")
    check_spec(_spec({"kind": "fixed", "norm": 1.0}), clients_per_round=10,
               strategy_name="fedadam")


def test_epsilon_refuses_pld_where_its_distribution_would_be_huge() -> None:
    # RDP says epsilon ~2000 here; PLD's distribution over such losses ran out of memory
    with pytest.raises(InvalidInput, match="accountant: pld is offered while RDP's epsilon"):
        epsilon(population=2, per_round=1, rounds=1000, noise_multiplier=0.5, delta=1e-5,
                sampling="poisson", accountant_name="pld")


def test_noise_for_epsilon_gives_up_past_its_cap() -> None:
    with pytest.raises(InvalidInput, match="target_epsilon: 0.001 needs a noise multiplier"):
        noise_for_epsilon(population=10, per_round=10, rounds=10**6, target_epsilon=0.001,
                          delta=1e-5)


def test_check_spec_refuses_a_budget_without_noise() -> None:
    spec = PrivacySpec.model_validate({"noise_multiplier": 0.0, "max_epsilon": 8.0,
                                       "clipping": {"kind": "fixed", "norm": 1.0}})
    with pytest.raises(InvalidInput, match=r"privacy\.max_epsilon: with noise_multiplier 0"):
        check_spec(spec, clients_per_round=10, strategy_name="fedavg")
