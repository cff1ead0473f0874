"""The `async` object of a FleetSpec: defaults, and every bad input rejected naming its field."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.errors import InvalidInput
from app.federated.async_rules import FedAsync, FedBuff, Staleness, make_rule
from app.schemas.asyncfl import AsyncSpec, check_against_spec


class Outer(BaseModel):
    """AsyncSpec nested as FleetSpec nests it, so error locations read as the API shows them."""

    model_config = ConfigDict(extra="forbid")
    async_: AsyncSpec | None = Field(None, alias="async")


def _error(body: dict) -> tuple[str, str]:
    with pytest.raises(ValidationError) as info:
        Outer.model_validate({"async": body})
    err = info.value.errors()[0]
    return ".".join(str(p) for p in err["loc"]), err["msg"]


def test_read_async_spec_defaults():
    spec = AsyncSpec(algorithm="fedbuff")
    assert spec.model_dump() == {
        "algorithm": "fedbuff", "concurrency": 10, "buffer_size": None, "server_lr": 1.0,
        "staleness": {"kind": "polynomial", "exponent": 0.5}, "mixing": 0.6,
        "max_staleness": None}
    assert spec.k == 10
    assert AsyncSpec(algorithm="fedbuff", concurrency=4).k == 4
    assert AsyncSpec(algorithm="fedbuff", concurrency=40, buffer_size=7).k == 7
    assert AsyncSpec(algorithm="fedasync", concurrency=40).k == 1
    hinge = AsyncSpec.model_validate({"algorithm": "fedasync", "staleness": {"kind": "hinge"}})
    assert hinge.staleness.model_dump() == {"kind": "hinge", "a": 10.0, "b": 4.0}


def test_read_async_spec_round_trips_through_json():
    spec = AsyncSpec.model_validate({"algorithm": "fedbuff", "concurrency": 20, "buffer_size": 5,
                                     "staleness": {"kind": "constant"}, "max_staleness": 8})
    again = AsyncSpec.model_validate(json.loads(spec.model_dump_json()))
    assert again == spec


@pytest.mark.parametrize(("body", "field"), [
    ({"algorithm": "fedsync"}, "async.algorithm"),
    ({"concurrency": 10}, "async.algorithm"),
    ({"algorithm": "fedbuff", "concurrency": 0}, "async.concurrency"),
    ({"algorithm": "fedbuff", "concurrency": True}, "async.concurrency"),
    ({"algorithm": "fedbuff", "concurrency": 4, "buffer_size": 5}, "async.buffer_size"),
    ({"algorithm": "fedbuff", "buffer_size": 0}, "async.buffer_size"),
    ({"algorithm": "fedasync", "buffer_size": 2}, "async.buffer_size"),
    ({"algorithm": "fedbuff", "server_lr": 0}, "async.server_lr"),
    ({"algorithm": "fedbuff", "server_lr": float("nan")}, "async.server_lr"),
    ({"algorithm": "fedbuff", "server_lr": float("inf")}, "async.server_lr"),
    ({"algorithm": "fedasync", "mixing": 0.0}, "async.mixing"),
    ({"algorithm": "fedasync", "mixing": 1.01}, "async.mixing"),
    ({"algorithm": "fedasync", "mixing": float("nan")}, "async.mixing"),
    ({"algorithm": "fedasync", "staleness": {"kind": "polynomial", "exponent": -0.5}},
     "async.staleness.polynomial.exponent"),
    ({"algorithm": "fedasync", "staleness": {"kind": "polynomial", "exponent": float("inf")}},
     "async.staleness.polynomial.exponent"),
    ({"algorithm": "fedasync", "staleness": {"kind": "hinge", "a": 0}},
     "async.staleness.hinge.a"),
    ({"algorithm": "fedasync", "staleness": {"kind": "hinge", "b": -1}},
     "async.staleness.hinge.b"),
    ({"algorithm": "fedasync", "staleness": {"kind": "cubic"}}, "async.staleness"),
    ({"algorithm": "fedasync", "staleness": {"kind": "constant", "exponent": 1}},
     "async.staleness.constant.exponent"),
    ({"algorithm": "fedasync", "max_staleness": -1}, "async.max_staleness"),
    ({"algorithm": "fedasync", "deadline": 3}, "async.deadline"),
])
def test_reject_async_spec_naming_the_field(body, field):
    loc, _ = _error(body)
    assert loc == field


def test_reject_async_spec_buffer_over_concurrency_says_why():
    _, msg = _error({"algorithm": "fedbuff", "concurrency": 4, "buffer_size": 5})
    assert "must be <= concurrency" in msg


def _check(spec: AsyncSpec | None, **kw) -> None:
    args = {"mode": "async", "clients": 20, "personal": [], "strategy_name": "fedavg",
            "finetune": 0, **kw}
    check_against_spec(spec, **args)


FEDBUFF = AsyncSpec(algorithm="fedbuff", concurrency=10)


def test_check_async_spec_accepts_a_consistent_fleet():
    _check(FEDBUFF)
    _check(FEDBUFF, clients=10)
    _check(FEDBUFF, personal=["dense_2/"], finetune=2)  # see check_against_spec: they make sense
    _check(None, mode="sync")


@pytest.mark.parametrize(("spec", "kw", "field", "why"), [
    (FEDBUFF, {"mode": "sync"}, "async:", "mode 'sync'"),
    (None, {}, "async:", "needs an async object"),
    (FEDBUFF, {"mode": "batch"}, "mode:", "'sync' or 'async'"),
    (FEDBUFF, {"clients": 9}, "async.concurrency:", "must be <= clients"),
    (FEDBUFF, {"strategy_name": "local"}, "strategy.name:", "never updates a global model"),
    (FEDBUFF, {"strategy_name": "fedadam"}, "strategy.name:", "async.algorithm"),
    (FEDBUFF, {"round_deadline_s": 60.0}, "round_deadline_s:", "async.max_staleness"),
    (FEDBUFF, {"over_commit": 1.3}, "over_commit:", "synchronous round"),
    (FEDBUFF, {"min_completed": 2}, "min_completed:", "synchronous round"),
])
def test_reject_async_spec_against_the_fleet(spec, kw, field, why):
    with pytest.raises(InvalidInput) as info:
        _check(spec, **kw)
    assert info.value.status == 422
    assert info.value.detail.startswith(field)
    assert why in info.value.detail


@pytest.mark.parametrize("body", [{"algorithm": "fedbuff"}, {"algorithm": "fedasync"},
                                  {"algorithm": "fedbuff", "concurrency": 3,
                                   "staleness": {"kind": "hinge", "a": 2}}])
def test_read_async_spec_stored_form_validates_again(body):
    stored = AsyncSpec.model_validate(body).to_dict()
    assert stored["buffer_size"] == AsyncSpec.model_validate(body).k
    assert AsyncSpec.model_validate(json.loads(json.dumps(stored))).to_dict() == stored


def test_make_rule_from_the_stored_spec():
    buff = make_rule(AsyncSpec(algorithm="fedbuff", concurrency=8, buffer_size=4,
                               server_lr=0.5).to_dict())
    assert isinstance(buff, FedBuff) and (buff.k, buff.server_lr) == (4, 0.5)
    assert buff.staleness == Staleness("polynomial", exponent=0.5)
    fasync = make_rule(AsyncSpec.model_validate(
        {"algorithm": "fedasync", "mixing": 0.9, "staleness": {"kind": "constant"}}).to_dict())
    assert isinstance(fasync, FedAsync) and fasync.alpha(7) == 0.9
