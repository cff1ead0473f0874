"""ModelValidator with real child processes: the real probe, and children that crash or hang."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable, Iterator

import pytest

import models
from app.errors import InvalidModel
from app.runtime.validator import ModelValidator

# A stand-in probe speaking the same protocol. The payload picks its behaviour:
# b"crash" aborts (SIGABRT, like a native crash), b"hang" sleeps past any time limit,
# b"garbage" answers a line that is not JSON, anything else gets a valid empty answer.
FAKE_PROBE = textwrap.dedent("""
    import json, os, sys, time
    stdin = sys.stdin.buffer
    while True:
        header = stdin.read(8)
        if len(header) < 8:
            break
        payload = stdin.read(int.from_bytes(header, "big"))
        if payload == b"crash":
            os.abort()
        if payload == b"hang":
            time.sleep(120)
        if payload == b"garbage":
            sys.stdout.write("Segmentation fault (core dumped)\\n")
        else:
            sys.stdout.write(json.dumps({"ok": True, "signatures": {}}) + "\\n")
        sys.stdout.flush()
""")
FAKE = [sys.executable, "-c", FAKE_PROBE]
# What the brief's crashing child does: read one request, then abort.
ABORT_AFTER_READ = [sys.executable, "-c",
                    "import os, sys; s = sys.stdin.buffer; "
                    "s.read(int.from_bytes(s.read(8), 'big')); os.abort()"]
HANG_AFTER_READ = [sys.executable, "-c",
                   "import sys, time; s = sys.stdin.buffer; "
                   "s.read(int.from_bytes(s.read(8), 'big')); time.sleep(120)"]


def alive(pid: int) -> bool:
    """Whether pid exists (a zombie, i.e. a child nobody waited for, counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def child_pid(v: ModelValidator) -> int:
    proc = v._proc  # private, read only to learn the pid
    assert proc is not None, "no child running"
    return proc.pid


Factory = Callable[..., ModelValidator]


@pytest.fixture
def make_validator() -> Iterator[Factory]:
    """ModelValidator, closing every instance a test makes (so no child outlives it)."""
    made: list[ModelValidator] = []

    def factory(*args: object, **kwargs: object) -> ModelValidator:
        v = ModelValidator(*args, **kwargs)  # type: ignore[arg-type]
        made.append(v)
        return v

    yield factory
    for v in made:
        v.close()


# The real probe (one child for the module: its TensorFlow import costs seconds)


@pytest.fixture(scope="module")
def probe() -> Iterator[ModelValidator]:
    v = ModelValidator(timeout=120, idle_seconds=0)  # 0: the child stays between tests
    v.start()
    yield v
    v.close()


def test_real_probe_accepts_mlp(probe: ModelValidator, mlp_bytes: bytes) -> None:
    sigs = probe.validate(mlp_bytes)
    assert sorted(sigs) == ["infer", "restore", "save", "train"]
    assert set(sigs["train"].inputs) == {"x", "y"}
    assert sigs["train"].inputs["x"].shape == (-1, 28, 28)
    assert sigs["train"].inputs["x"].dtype == "float32"
    assert sigs["infer"].outputs["output"].shape == (-1, 10)
    (path,) = sigs["save"].inputs.values()
    assert path.shape == () and path.dtype == "string"


def test_real_probe_accepts_head(probe: ModelValidator, head_bytes: bytes) -> None:
    sigs = probe.validate(head_bytes)
    assert sigs["train"].inputs["label"].dtype == "int32"


@pytest.mark.parametrize(("name", "needle"), [
    ("empty", "not a loadable TFLite flatbuffer"),
    ("text", "not a loadable TFLite flatbuffer"),
    ("random", "not a loadable TFLite flatbuffer"),
    ("truncated", "not a loadable TFLite flatbuffer"),
    ("no-train", "missing required signature(s): train"),
])
def test_real_probe_rejects_with_reason(probe: ModelValidator, mlp_bytes: bytes, name: str,
                                        needle: str) -> None:
    data = {
        "empty": lambda: b"",
        "text": lambda: b"this is a README, not a model\n" * 10,
        "random": lambda: os.urandom(64 * 1024),
        "truncated": lambda: mlp_bytes[: len(mlp_bytes) // 2],
        "no-train": lambda: models.build_cached("mlp", omit=("train",)),
    }[name]()
    pid = child_pid(probe)
    with pytest.raises(InvalidModel) as info:
        probe.validate(data)
    assert needle in info.value.detail, info.value.detail
    assert info.value.status == 422
    assert child_pid(probe) == pid  # a rejection is an answer, not a crash


def test_real_probe_still_accepts_after_rejections(probe: ModelValidator,
                                                   mlp_bytes: bytes) -> None:
    with pytest.raises(InvalidModel):
        probe.validate(b"\x00" * 100)
    assert "train" in probe.validate(mlp_bytes)


def test_real_probe_close_leaves_no_child_and_validate_respawns(probe: ModelValidator,
                                                                mlp_bytes: bytes) -> None:
    pid = child_pid(probe)
    assert alive(pid)
    probe.close()
    assert probe._proc is None
    assert not alive(pid)
    assert "train" in probe.validate(mlp_bytes)  # a new child, TensorFlow imported again
    assert child_pid(probe) != pid


# Children that misbehave


def test_crashing_child_is_invalid_model_and_validator_recovers(make_validator: Factory) -> None:
    v = make_validator(10.0, command=ABORT_AFTER_READ)
    with pytest.raises(InvalidModel) as info:
        v.validate(b"whatever")
    assert "crashed" in info.value.detail
    assert v._proc is None  # reaped
    with pytest.raises(InvalidModel) as again:  # a new child is spawned, and it answers
        v.validate(b"whatever")
    assert "crashed" in again.value.detail


def test_validator_answers_again_with_a_fresh_child_after_a_crash(make_validator: Factory) -> None:
    v = make_validator(10.0, command=FAKE)
    assert v.validate(b"fine") == {}
    first = child_pid(v)
    with pytest.raises(InvalidModel) as info:
        v.validate(b"crash")
    assert "crashed" in info.value.detail
    assert not alive(first)
    assert v.validate(b"fine") == {}
    assert child_pid(v) != first


def test_hanging_child_hits_the_time_limit_and_is_killed(make_validator: Factory) -> None:
    v = make_validator(1.0, command=HANG_AFTER_READ)
    v.start()
    pid = child_pid(v)
    with pytest.raises(InvalidModel) as info:
        v.validate(b"model")
    assert "did not finish within 1 s" in info.value.detail
    assert v._proc is None
    assert not alive(pid)


def test_validator_recovers_after_a_hang(make_validator: Factory) -> None:
    v = make_validator(1.0, command=FAKE)
    assert v.validate(b"fine") == {}
    pid = child_pid(v)
    with pytest.raises(InvalidModel, match="did not finish within"):
        v.validate(b"hang")
    assert not alive(pid)
    assert v.validate(b"fine") == {}


def test_close_leaves_no_child(make_validator: Factory) -> None:
    v = make_validator(10.0, command=FAKE)
    v.start()
    pid = child_pid(v)
    assert alive(pid)
    v.close()
    assert not alive(pid)
    v.close()  # idempotent


def test_child_is_recycled_after_recycle_after_requests(make_validator: Factory) -> None:
    v = make_validator(10.0, recycle_after=2, command=FAKE)
    v.validate(b"a")
    pid = child_pid(v)
    v.validate(b"b")  # second request: the child is retired afterwards
    assert v._proc is None and not alive(pid)
    v.validate(b"c")
    assert child_pid(v) != pid


def test_child_answering_garbage_is_invalid_model(make_validator: Factory) -> None:
    v = make_validator(10.0, command=FAKE)
    with pytest.raises(InvalidModel):
        v.validate(b"garbage")


def test_time_limit_covers_sending_the_model(make_validator: Factory) -> None:
    # A child stuck before it reads (say, in its TensorFlow import), sleeping 3 s.
    v = make_validator(0.5, command=[sys.executable, "-c", "import time; time.sleep(3)"])
    with pytest.raises(InvalidModel) as info:
        v.validate(b"\0" * (1 << 20))
    assert "did not finish within" in info.value.detail, info.value.detail
