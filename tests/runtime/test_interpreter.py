"""LiteSession, LiveSession and SessionPool over real TFLite models from models/."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from app.errors import InvalidInput, ModelExecutionError
from app.runtime.interpreter import LiteSession, load_interpreter
from app.runtime.pool import SessionPool
from app.runtime.serial import SerialExecutor
from app.runtime.session import LiveSession
from app.runtime.signatures import Signatures, read_signatures

WAIT = 60


def _json(body: object) -> bytes:
    return orjson.dumps(body)


def mlp_batch(n: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 28, 28), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
    return x, y


@pytest.fixture(scope="module")
def mlp_signatures(mlp_bytes: bytes) -> Signatures:
    return read_signatures(load_interpreter(mlp_bytes))


@pytest.fixture(scope="module")
def head_signatures(head_bytes: bytes) -> Signatures:
    return read_signatures(load_interpreter(head_bytes))


@pytest.fixture
def strand_pool() -> Any:
    executor = ThreadPoolExecutor(2)
    yield executor
    executor.shutdown(wait=True)


def live(model: bytes, sigs: Signatures, pool: ThreadPoolExecutor, sid: str = "s1") -> LiveSession:
    return LiveSession(id=sid, user_id="u1", model_id="m1", signatures=sigs,
                       lite=LiteSession(model), strand=SerialExecutor(pool))


# LiteSession


def test_read_signatures_of_mlp(mlp_signatures: Signatures) -> None:
    assert sorted(mlp_signatures) == ["infer", "restore", "save", "train"]
    assert mlp_signatures["train"].inputs["x"].shape == (-1, 28, 28)
    assert mlp_signatures["train"].inputs["y"].shape == (-1, 10)
    assert mlp_signatures["infer"].outputs["output"].shape == (-1, 10)
    assert mlp_signatures["save"].inputs[next(iter(mlp_signatures["save"].inputs))].dtype == (
        "string")


def test_save_then_restore_in_another_session_gives_identical_outputs(
        mlp_bytes: bytes, tmp_path: Path) -> None:
    x, y = mlp_batch()
    trained = LiteSession(mlp_bytes)
    for _ in range(3):
        trained.run("train", {"x": x, "y": y})
    expected = trained.run("infer", {"x": x})
    path = tmp_path / "w.ckpt"
    trained.save(path)
    assert path.stat().st_size > 0

    fresh = LiteSession(mlp_bytes)
    before = fresh.run("infer", {"x": x})
    assert not np.array_equal(before["output"], expected["output"])  # training did something
    fresh.restore(path)
    after = fresh.run("infer", {"x": x})
    assert set(after) == set(expected)
    for name in expected:
        assert np.array_equal(after[name], expected[name]), name


def test_training_lowers_the_loss_on_one_batch(mlp_bytes: bytes) -> None:
    x, y = mlp_batch(16)
    s = LiteSession(mlp_bytes)
    losses = [float(s.run("train", {"x": x, "y": y})["loss"]) for _ in range(20)]
    assert losses[-1] < losses[0]


def test_restore_from_missing_path_is_model_execution_error(mlp_bytes: bytes,
                                                            tmp_path: Path) -> None:
    s = LiteSession(mlp_bytes)
    with pytest.raises(ModelExecutionError) as info:
        s.restore(tmp_path / "does-not-exist.ckpt")
    assert "signature 'restore' failed" in info.value.detail
    assert info.value.status == 422


def test_save_to_missing_directory_is_model_execution_error(mlp_bytes: bytes,
                                                            tmp_path: Path) -> None:
    s = LiteSession(mlp_bytes)
    with pytest.raises(ModelExecutionError):
        s.save(tmp_path / "no" / "such" / "dir" / "w.ckpt")


@pytest.mark.parametrize("bad", [
    {"x": np.zeros((2, 28, 27), np.float32)},   # the interpreter cannot reshape
    {"x": np.zeros((2, 28, 28), np.float64)},   # wrong dtype
    {"z": np.zeros((2, 28, 28), np.float32)},   # unknown name
    {},                                         # nothing
])
def test_inputs_the_interpreter_rejects_are_model_execution_errors_and_session_survives(
        mlp_bytes: bytes, bad: dict[str, np.ndarray]) -> None:
    x, _ = mlp_batch()
    s = LiteSession(mlp_bytes)
    reference = s.run("infer", {"x": x})["output"]
    with pytest.raises(ModelExecutionError) as info:
        s.run("infer", bad)
    assert "signature 'infer' failed" in info.value.detail
    # one bad call must not break the session for the next good one
    assert np.array_equal(s.run("infer", {"x": x})["output"], reference)


def test_error_detail_names_only_this_calls_failure(head_bytes: bytes, tmp_path: Path) -> None:
    s = LiteSession(head_bytes)
    features = np.zeros((2, 64), np.float32)
    with pytest.raises(ModelExecutionError) as first:
        s.run("train", {"bottleneck": features, "label": np.array([0, 1, 2], np.int32)})
    assert "labels shape [3]" in first.value.detail
    with pytest.raises(ModelExecutionError) as second:
        s.restore(tmp_path / "missing.ckpt")
    assert "missing.ckpt" in second.value.detail
    assert "labels shape [3]" not in second.value.detail


def test_batch_size_can_change_between_calls(mlp_bytes: bytes) -> None:
    x, _ = mlp_batch(5)
    s = LiteSession(mlp_bytes)
    full = s.run("infer", {"x": x})["output"]
    one = s.run("infer", {"x": x[:1]})["output"]
    assert one.shape == (1, 10) and full.shape == (5, 10)
    np.testing.assert_allclose(one[0], full[0], rtol=1e-5, atol=1e-6)


# LiveSession


def test_live_session_train_counts_steps_sets_loss_and_dirty(
        mlp_bytes: bytes, mlp_signatures: Signatures, strand_pool: ThreadPoolExecutor) -> None:
    session = live(mlp_bytes, mlp_signatures, strand_pool)
    assert session.steps == 0 and session.last_loss is None and not session.dirty
    x, y = mlp_batch()
    body = {"inputs": {"x": x.tolist(), "y": y.tolist()}}
    stamp = session.updated_at

    outputs, step = session.train(_json(body))
    assert step == 1 == session.steps
    assert isinstance(outputs["loss"], float)  # encoded for JSON
    assert session.last_loss == pytest.approx(outputs["loss"])
    assert session.dirty
    assert session.updated_at >= stamp

    _, step = session.strand.submit(session.train, _json(body)).result(WAIT)
    assert step == 2 and session.dirty

    session.saved_steps = session.steps  # what a checkpoint does
    assert not session.dirty
    session.train(_json(body))
    assert session.dirty and session.steps == 3


def _mlp_batches(n: int) -> Any:
    for i in range(n):
        x, y = mlp_batch(seed=i)
        yield {"x": x, "y": y}


def test_train_steps_yields_to_a_call_queued_on_the_strand_after_the_step_under_way(
        mlp_bytes: bytes, mlp_signatures: Signatures, strand_pool: ThreadPoolExecutor) -> None:
    s = live(mlp_bytes, mlp_signatures, strand_pool)
    x, _ = mlp_batch()
    queued: list[Any] = []

    def batches() -> Any:  # the third batch arrives with an infer call queued behind the chunk
        for i, b in enumerate(_mlp_batches(50)):
            if i == 2:
                body = _json({"inputs": {"x": x.tolist()}})
                queued.append(s.strand.submit(s.call, "infer", body))
            yield b

    rest = batches()
    losses = s.strand.submit(s.train_steps, rest, 60.0).result(WAIT)
    assert len(losses) == 3 and s.steps == 3  # not the 50 the minute-long budget allowed
    assert all(np.isfinite(losses))
    assert len(queued[0].result(WAIT)["output"]) == len(x)  # it ran, between two turns
    more = s.strand.submit(s.train_steps, rest, 60.0).result(WAIT)  # the job's next turn
    assert len(more) == 47 and s.steps == 50


def test_train_steps_stops_when_asked_and_at_the_end_of_the_batches(
        mlp_bytes: bytes, mlp_signatures: Signatures, strand_pool: ThreadPoolExecutor) -> None:
    s = live(mlp_bytes, mlp_signatures, strand_pool)
    asked = threading.Event()
    seen: list[int] = []

    def stop() -> bool:
        seen.append(s.steps)
        if s.steps == 4:
            asked.set()
        return asked.is_set()

    assert len(s.strand.submit(s.train_steps, _mlp_batches(10), 60.0, stop).result(WAIT)) == 4
    assert seen == [1, 2, 3, 4]  # checked after every step
    assert len(s.strand.submit(s.train_steps, _mlp_batches(6), 60.0).result(WAIT)) == 6
    assert s.steps == 10 and s.last_loss is not None


def test_live_session_rejected_input_does_not_count_a_step(
        mlp_bytes: bytes, mlp_signatures: Signatures, strand_pool: ThreadPoolExecutor) -> None:
    session = live(mlp_bytes, mlp_signatures, strand_pool)
    x, _ = mlp_batch(2)
    with pytest.raises(InvalidInput) as info:
        session.train(_json({"inputs": {"x": x.tolist()}}))
    assert "missing input(s) 'y'" in info.value.detail
    with pytest.raises(InvalidInput):
        session.train(_json({"inputs": {"x": x.tolist(), "y": [[0.0] * 9] * 2}}))
    with pytest.raises(InvalidInput, match="batch size"):  # caught before the interpreter
        session.train(_json({"inputs": {"x": x.tolist(), "y": [[0.0] * 10] * 3}}))
    assert session.steps == 0 and session.last_loss is None and not session.dirty


def test_live_session_mismatched_batch_sizes_do_not_train(
        mlp_bytes: bytes, mlp_signatures: Signatures, strand_pool: ThreadPoolExecutor) -> None:
    session = live(mlp_bytes, mlp_signatures, strand_pool)
    x, y = mlp_batch(4)
    with pytest.raises((InvalidInput, ModelExecutionError)):
        session.train(_json({"inputs": {"x": x.tolist(), "y": y[:1].tolist()}}))
    assert session.steps == 0


def test_live_session_call_infer_encodes_outputs(
        mlp_bytes: bytes, mlp_signatures: Signatures, strand_pool: ThreadPoolExecutor) -> None:
    session = live(mlp_bytes, mlp_signatures, strand_pool)
    x, _ = mlp_batch(3)
    out = session.call("infer", _json({"inputs": {"x": x.tolist()}}))
    assert out["output"].shape == (3, 10)
    np.testing.assert_allclose(out["output"].sum(axis=1), 1.0, rtol=1e-5)  # softmax rows
    assert session.steps == 0


def test_live_session_head_int32_labels(
        head_bytes: bytes, head_signatures: Signatures, strand_pool: ThreadPoolExecutor) -> None:
    session = live(head_bytes, head_signatures, strand_pool)
    features = np.random.default_rng(1).random((3, 64), dtype=np.float32).tolist()
    _, step = session.train(_json({"inputs": {"bottleneck": features, "label": [0, 3, 1]}}))
    assert step == 1 and session.last_loss is not None and np.isfinite(session.last_loss)
    with pytest.raises(InvalidInput) as info:
        session.train(_json({"inputs": {"bottleneck": features, "label": [0.0, 3.5, 1.0]}}))
    assert "'label'" in info.value.detail and "int32" in info.value.detail
    assert session.steps == 1


# SessionPool


def stub(pool: SessionPool, sid: str) -> LiveSession:
    """A LiveSession without an interpreter, for the pool's bookkeeping."""
    return LiveSession(id=sid, user_id="u", model_id="m", signatures={},
                       lite=None, strand=pool.strand())  # type: ignore[arg-type]


def run_together(n: int, fn: Any) -> list[tuple[str, Any]]:
    """Call fn from n threads released at the same moment; ("ok", value) or ("err", exc)."""
    barrier = threading.Barrier(n, timeout=WAIT)
    results: list[tuple[str, Any]] = [("none", None)] * n

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = ("ok", fn())
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertions
            results[i] = ("err", exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert not any(t.is_alive() for t in threads)
    return results


def test_get_or_load_loads_once_for_concurrent_callers() -> None:
    pool = SessionPool(2)
    try:
        calls = 0
        lock = threading.Lock()
        sentinel = stub(pool, "s1")

        def loader() -> Any:
            nonlocal calls
            with lock:
                calls += 1
            time.sleep(0.3)  # keep the load in flight while the others arrive
            return sentinel

        results = run_together(8, lambda: pool.get_or_load("s1", loader))
        assert calls == 1
        assert results == [("ok", sentinel)] * 8
        assert pool.get("s1") is sentinel
        assert pool.get_or_load("s1", loader) is sentinel and calls == 1  # cached now
    finally:
        pool.shutdown()


def test_get_or_load_failure_reaches_every_caller_and_a_later_call_retries() -> None:
    pool = SessionPool(2)
    try:
        calls = 0
        lock = threading.Lock()

        def failing() -> Any:
            nonlocal calls
            with lock:
                calls += 1
            time.sleep(0.3)
            raise OSError("checkpoint blob unreadable")

        results = run_together(8, lambda: pool.get_or_load("s1", failing))
        assert calls >= 1
        for kind, value in results:
            assert kind == "err" and isinstance(value, OSError), (kind, value)
            assert "checkpoint blob unreadable" in str(value)
        assert pool.get("s1") is None and len(pool) == 0

        sentinel = stub(pool, "s1")
        assert pool.get_or_load("s1", lambda: sentinel) is sentinel
        assert pool.get("s1") is sentinel
    finally:
        pool.shutdown()


def test_pool_add_remove_all() -> None:
    pool = SessionPool(1)
    try:
        a = stub(pool, "a")
        pool.add(a)
        assert pool.get("a") is a and pool.all() == [a] and len(pool) == 1
        assert pool.get_or_load("a", lambda: pytest.fail("must not load")) is a
        assert pool.remove("a") is a
        assert pool.remove("a") is None
        assert pool.get("a") is None and pool.all() == []
    finally:
        pool.shutdown()
