"""Privacy: the fleet spec's `privacy` block and the planner's question and answer
(docs/api.md, "Privacy")."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.errors import InvalidInput

# Strategies whose aggregate is not the clipped mean: the noise z*C/m would not cover them.
NOT_PRIVATE = {
    "fedmedian": "the coordinate-wise median",
    "fedtrimmedavg": "a trimmed mean",
}
MAX_POPULATION = 10**9
MAX_ROUNDS = 10**6


class FixedClipping(BaseModel):
    """Every update clipped to one L2 norm."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False,
                              json_schema_extra={"examples": [{"kind": "fixed", "norm": 1.0}]})

    kind: Literal["fixed"]
    norm: float = Field(gt=0, description="The clipping norm C")


class AdaptiveClipping(BaseModel):
    """The norm follows a quantile of the update norms (Andrew et al., arXiv 1905.03871)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra={
        "examples": [{"kind": "adaptive", "initial_norm": 0.1, "target_unclipped_quantile": 0.5,
                      "learning_rate": 0.2, "count_stddev": None}]})

    kind: Literal["adaptive"]
    initial_norm: float = Field(0.1, gt=0)
    target_unclipped_quantile: float = Field(0.5, ge=0, le=1)
    learning_rate: float = Field(0.2, gt=0, le=10)
    count_stddev: float | None = Field(None, ge=0, description="Std of the noise on the count "
                                       "of unclipped updates; default clients_per_round / 20")


Clipping = Annotated[FixedClipping | AdaptiveClipping, Field(discriminator="kind")]


class PrivacySpec(BaseModel):
    """User-level DP-FedAvg: clip each update, average over m, add N(0, (z*C/m)^2)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra={
        "examples": [{"noise_multiplier": 1.0, "clipping": {"kind": "fixed", "norm": 1.0},
                      "placement": "server", "delta": 1e-5, "max_epsilon": None}]})

    noise_multiplier: float = Field(ge=0, le=1e6, description="z: the noise std over C/m")
    clipping: Clipping
    placement: Literal["server", "client"] = Field("server", description="Where updates are "
                                                   "clipped; the result is the same")
    delta: float = Field(1e-5, gt=0, lt=1)
    max_epsilon: float | None = Field(None, gt=0, description="End the fleet before the round "
                                      "that would pass it")


def check_strategy(strategy_name: str) -> None:
    """422 when the strategy's aggregate is not the mean that DP-FedAvg's noise covers."""
    if strategy_name in NOT_PRIVATE:
        raise InvalidInput(
            f"privacy: strategy {strategy_name!r} aggregates by {NOT_PRIVATE[strategy_name]}, "
            "whose sensitivity is not the clipped mean's; DP-FedAvg needs fedavg, fedavgm or "
            "a FedOpt strategy (fedadam, fedyogi, fedadagrad)")


Sampling = Literal["poisson", "without_replacement"]
AccountantName = Literal["rdp", "pld"]


class EpsilonQuery(BaseModel):
    """A DP-FedAvg schedule; give noise_multiplier for its epsilon, or target_epsilon for the
    smallest noise multiplier that meets it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra={
        "examples": [{"population": 60000, "per_round": 150, "rounds": 6000,
                      "noise_multiplier": 1.3, "delta": 1e-5, "sampling": "poisson"}]})

    population: int = Field(ge=1, le=MAX_POPULATION, description="N: devices that can be picked")
    per_round: int = Field(ge=1, le=MAX_POPULATION, description="m: devices a round counts "
                           "(Poisson: expected)")
    rounds: int = Field(ge=1, le=MAX_ROUNDS)
    noise_multiplier: float | None = Field(None, gt=0, le=1e6)
    target_epsilon: float | None = Field(None, gt=0, le=1e6)
    delta: float = Field(1e-5, gt=0, lt=1)
    sampling: Sampling = "without_replacement"
    accountant: AccountantName = Field("rdp", description="pld: Poisson sampling only")

    @model_validator(mode="after")
    def _one_of(self) -> EpsilonQuery:
        if (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError("give exactly one of noise_multiplier and target_epsilon")
        if self.per_round > self.population:
            raise ValueError(f"per_round ({self.per_round}) must be at most population "
                             f"({self.population})")
        return self


class EpsilonAnswer(BaseModel):
    """Epsilon at delta after the rounds, for the noise multiplier (given or found)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "epsilon": 0.7242234026106222, "noise_multiplier": 1.3, "delta": 1e-5,
        "population": 60000, "per_round": 150, "rounds": 6000, "sampling": "poisson",
        "sampling_probability": 0.0025, "accountant": "rdp",
        "neighbouring": "add_or_remove_one", "event_noise_multiplier": 1.3}]})

    epsilon: float
    noise_multiplier: float
    delta: float
    population: int
    per_round: int
    rounds: int
    sampling: Sampling
    sampling_probability: float
    accountant: AccountantName
    neighbouring: Literal["add_or_remove_one", "replace_one"]
    event_noise_multiplier: float = Field(description="The Gaussian event's multiplier: z, or "
                                          "z/2 under replace-one (a swap moves the sum by 2C)")
