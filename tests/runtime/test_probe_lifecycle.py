"""The model-probe child's lifecycle: started by the first upload that needs it, stopped
after FLEETLITE_PROBE_IDLE_SECONDS without one, started again by the next upload."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from app.runtime.validator import ModelValidator
from tests.helpers import running_server, upload
from tests.runtime.test_validator import FAKE, alive, child_pid


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Poll until the condition holds; False if it never did within timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def validators() -> Iterator[list[ModelValidator]]:
    made: list[ModelValidator] = []
    yield made
    for v in made:
        v.close()


def make(made: list[ModelValidator], idle_seconds: float) -> ModelValidator:
    v = ModelValidator(10.0, idle_seconds=idle_seconds, command=FAKE)
    made.append(v)
    return v


def test_validate_starts_the_child_on_first_use(validators: list[ModelValidator]) -> None:
    v = make(validators, 3600)
    assert not v.running and v.children_started == 0
    assert v.validate(b"model") == {}
    assert v.running and v.children_started == 1
    v.validate(b"again")
    assert v.children_started == 1  # warm: the same child answers


def test_idle_child_exits_and_next_validate_starts_another(
        validators: list[ModelValidator]) -> None:
    v = make(validators, 0.2)
    v.validate(b"model")
    pid = child_pid(v)
    assert wait_for(lambda: not v.running)
    assert not alive(pid)  # killed and reaped, not left a zombie
    assert v.validate(b"model") == {}
    assert v.children_started == 2 and child_pid(v) != pid


def test_idle_zero_keeps_the_child(validators: list[ModelValidator]) -> None:
    v = make(validators, 0)
    v.validate(b"model")
    assert v._timer is None  # nothing will stop it
    assert v.running


def test_close_stops_an_armed_idle_timer(validators: list[ModelValidator]) -> None:
    v = make(validators, 3600)
    v.validate(b"model")
    pid = child_pid(v)
    v.close()
    assert v._timer is None and not v.running and not alive(pid)


def test_server_starts_no_probe_until_an_upload(tmp_path: Path, mlp_bytes: bytes) -> None:
    with running_server("sqlite-local", tmp_path, None, probe_idle_seconds=0.3) as server:
        validator = server.ctx.validator
        assert not validator.running and validator.children_started == 0
        with httpx.Client(base_url=server.url, timeout=120) as client:
            upload(client, mlp_bytes, "mlp")
            assert validator.children_started == 1
            assert wait_for(lambda: not validator.running)
            r = client.post("/v1/models", files={"file": ("m.tflite", b"not a model")},
                            data={"name": "broken"})
            assert r.status_code == 422, r.text  # a cold child still answers the upload
            assert validator.children_started == 2
