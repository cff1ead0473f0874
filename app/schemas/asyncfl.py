"""The `async` object of a FleetSpec (docs/api.md, "Asynchronous fleets"), and its checks
against the rest of the spec."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator

from app.errors import InvalidInput

# FedBuff's buffer when the spec leaves it out (the paper's K = 10), capped by concurrency.
DEFAULT_BUFFER = 10
MAX_DEVICES = 1_000_000  # FleetSpec's bound on clients


def _no_bool(value: Any) -> Any:
    # JSON true is not 1: pydantic's lax mode would take it for a number.
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    return value


Int = Annotated[int, BeforeValidator(_no_bool)]
Num = Annotated[float, BeforeValidator(_no_bool)]
def _config(example: dict[str, Any]) -> ConfigDict:
    return ConfigDict(extra="forbid", allow_inf_nan=False,
                      json_schema_extra={"examples": [example]})


class Polynomial(BaseModel):
    """s(tau) = (1 + tau) ** -exponent."""

    model_config = _config({"kind": "polynomial", "exponent": 0.5})
    kind: Literal["polynomial"]
    exponent: Num = Field(0.5, ge=0.0, description="FedBuff's default 0.5")


class Constant(BaseModel):
    """s(tau) = 1."""

    model_config = _config({"kind": "constant"})
    kind: Literal["constant"]


class Hinge(BaseModel):
    """s(tau) = 1 if tau <= b else 1 / (a * (tau - b) + 1)."""

    model_config = _config({"kind": "hinge", "a": 10, "b": 4})
    kind: Literal["hinge"]
    a: Num = Field(10.0, gt=0.0)
    b: Num = Field(4.0, ge=0.0)


StalenessSpec = Annotated[Polynomial | Constant | Hinge, Field(discriminator="kind")]


class AsyncSpec(BaseModel):
    """How an asynchronous fleet trains: C devices at all times, a server update per K arrivals
    (FedBuff) or per arrival (FedAsync)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, json_schema_extra={
        "examples": [{"algorithm": "fedbuff", "concurrency": 20, "buffer_size": 10,
                      "server_lr": 1.0, "staleness": {"kind": "polynomial", "exponent": 0.5},
                      "max_staleness": None}]})

    algorithm: Literal["fedbuff", "fedasync"]
    concurrency: Int = Field(10, ge=1, le=MAX_DEVICES, description="Devices training at once")
    buffer_size: Int | None = Field(None, ge=1, le=MAX_DEVICES, description="FedBuff's K: "
                                    "arrivals per server update (default min(10, concurrency)); "
                                    "FedAsync: 1")
    server_lr: Num = Field(1.0, gt=0.0, description="FedBuff's server learning rate")
    staleness: StalenessSpec = Field(default_factory=lambda: Polynomial(kind="polynomial"))
    mixing: Num = Field(0.6, gt=0.0, le=1.0, description="FedAsync's alpha, in (0, 1]")
    max_staleness: Int | None = Field(None, ge=0, description="An update that would arrive "
                                      "more versions late is cut when the version passes it")

    @field_validator("buffer_size")
    @classmethod
    def _buffer_fits(cls, value: int | None, info: ValidationInfo) -> int | None:
        concurrency, algorithm = info.data.get("concurrency"), info.data.get("algorithm")
        if value is None:
            return None
        if algorithm == "fedasync" and value != 1:
            raise ValueError("fedasync applies every arrival on its own: leave buffer_size out "
                             f"or give 1, not {value}")
        if concurrency is not None and value > concurrency:
            raise ValueError(f"{value} arrivals per update can never be buffered with "
                             f"concurrency {concurrency}: must be <= concurrency")
        return value

    @property
    def k(self) -> int:
        """Completed arrivals per server update: FedBuff's buffer_size, 1 for FedAsync."""
        if self.algorithm == "fedasync":
            return 1
        return self.buffer_size if self.buffer_size is not None else min(DEFAULT_BUFFER,
                                                                         self.concurrency)

    def to_dict(self) -> dict[str, Any]:
        """The spec with every default filled in, `buffer_size` resolved, as a fleet stores it."""
        return {**self.model_dump(), "buffer_size": self.k}


def check_against_spec(async_spec: AsyncSpec | None, *, mode: str, clients: int,
                       personal: list[str] | tuple[str, ...], strategy_name: str,
                       finetune: int, round_deadline_s: float | None = None,
                       over_commit: float = 1.0, min_completed: int = 1) -> None:
    """InvalidInput naming the field where `async` clashes with the rest of the FleetSpec."""
    if mode not in ("sync", "async"):
        raise InvalidInput(f"mode: must be 'sync' or 'async', got {mode!r}")
    if mode == "sync":
        if async_spec is not None:
            raise InvalidInput("async: given with mode 'sync'; set mode to 'async' to train "
                               "asynchronously, or leave async out")
        return
    if async_spec is None:
        raise InvalidInput("async: mode 'async' needs an async object such as "
                           '{"algorithm": "fedbuff", "concurrency": 10}')
    if async_spec.concurrency > clients:
        raise InvalidInput(f"async.concurrency: {async_spec.concurrency} devices cannot train "
                           f"at once in a fleet of {clients} clients: must be <= clients")
    if strategy_name == "local":
        raise InvalidInput("strategy.name: 'local' trains every device alone and never "
                           "updates a global model, so there is nothing to update "
                           "asynchronously; use mode 'sync' for the local baseline")
    if strategy_name != "fedavg":
        raise InvalidInput(f"strategy.name: {strategy_name!r} is a synchronous round's "
                           "aggregation; an async fleet's server rule is async.algorithm "
                           "(leave strategy out, or give fedavg)")
    # A sync round's closing rules would be ignored: say so rather than run without them.
    for field, value, default in (("round_deadline_s", round_deadline_s, None),
                                  ("over_commit", over_commit, 1.0),
                                  ("min_completed", min_completed, 1)):
        if value != default:
            raise InvalidInput(f"{field}: closes a synchronous round; an async fleet has none "
                               "to close (async.max_staleness bounds how late an update may "
                               "arrive): leave it out")
    # `personal` and `finetune_epochs` are accepted: a device keeps its own personal variables
    # from one update to its next (it never trains twice at once), and fine-tuning runs after
    # the last server update, whichever mode produced it.
    del personal, finetune
