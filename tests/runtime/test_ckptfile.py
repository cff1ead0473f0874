"""Checkpoint files as named arrays, against the real MLP's save and restore signatures."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import models
from app.runtime import ckptfile
from app.runtime.interpreter import LiteSession

SHAPES = {"dense_1/kernel": (784, 128), "dense_1/bias": (128,),
          "dense_2/kernel": (128, 10), "dense_2/bias": (10,)}


@pytest.fixture(scope="module")
def mlp() -> bytes:
    return models.build_cached("mlp")


@pytest.fixture(scope="module")
def saved(mlp: bytes, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes the MLP's own save signature writes for its initial weights."""
    path = tmp_path_factory.mktemp("saved") / "initial.ckpt"
    LiteSession(mlp).save(path)
    return path.read_bytes()


def forward(w: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The MLP's infer in numpy: softmax(relu(x W1 + b1) W2 + b2)."""
    hidden = np.maximum(x.reshape(-1, 784) @ w["dense_1/kernel"] + w["dense_1/bias"], 0.0)
    logits = hidden @ w["dense_2/kernel"] + w["dense_2/bias"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_read_checkpoint_of_mlp(saved: bytes, tmp_path: Path) -> None:
    arrays = ckptfile.read(saved, tmp_path)
    assert {k: v.shape for k, v in arrays.items()} == SHAPES
    assert all(v.dtype == np.float32 for v in arrays.values())
    assert np.all(arrays["dense_1/bias"] == 0) and np.any(arrays["dense_1/kernel"] != 0)
    assert list(tmp_path.iterdir()) == []  # the temp file is gone


def test_write_modified_weights_restore_into_fresh_session(mlp: bytes, saved: bytes,
                                                           tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = ckptfile.read(saved, tmp_path)
    changed = {k: (v + rng.normal(0, 0.05, v.shape)).astype(np.float32)
               for k, v in arrays.items()}
    path = tmp_path / "changed.ckpt"
    path.write_bytes(ckptfile.write(changed, tmp_path))
    session = LiteSession(mlp)
    session.restore(path)
    x = rng.random((16, 28, 28), dtype=np.float32)
    got = session.run("infer", {"x": x})["output"]
    want = forward({k: v.astype(np.float64) for k, v in changed.items()}, x.astype(np.float64))
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(want, forward(arrays, x), atol=1e-3)  # the change is visible


def test_write_read_round_trip_is_byte_identical(saved: bytes, tmp_path: Path) -> None:
    assert ckptfile.write(ckptfile.read(saved, tmp_path), tmp_path) == saved


def test_write_same_arrays_same_bytes_in_any_order(saved: bytes, tmp_path: Path) -> None:
    arrays = ckptfile.read(saved, tmp_path)
    reordered = dict(reversed(list(arrays.items())))
    once = ckptfile.write(arrays, tmp_path)
    assert ckptfile.write(arrays, tmp_path) == once == ckptfile.write(reordered, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_write_and_read_from_threads(tmp_path: Path) -> None:
    def round_trip(i: int) -> bool:
        arrays: dict[str, np.ndarray] = {"w": np.full((50, 7), i, np.float32),
                                         "b": np.arange(i, dtype=np.float64)}
        back = ckptfile.read(ckptfile.write(arrays, tmp_path), tmp_path)
        return back.keys() == arrays.keys() and all(
            np.array_equal(back[k], arrays[k]) and back[k].dtype == arrays[k].dtype
            for k in arrays)

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(round_trip, range(1, 41)))
    assert list(tmp_path.iterdir()) == []


def test_read_refuses_other_bytes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a checkpoint"):
        ckptfile.read(b"not a checkpoint at all", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_nothing_and_glob_scratch(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one array"):
        ckptfile.write({}, tmp_path)
    odd = tmp_path / "a[1]"
    odd.mkdir()
    with pytest.raises(ValueError, match="glob character"):
        ckptfile.write({"w": np.zeros(2)}, odd)


@pytest.mark.parametrize("name", ["mlp", "head", "cnn"])
def test_numpy_reader_equals_tensorflows_exactly(name: str, tmp_path: Path) -> None:
    import tensorflow as tf

    from app.runtime import ckpt_v1

    lite = LiteSession(models.build_cached(name))
    path = tmp_path / "w.ckpt"
    lite.save(path)
    data = path.read_bytes()
    fast = ckpt_v1.read(data)
    assert fast is not None  # every variable of our models: float32, whole
    reader = tf.train.load_checkpoint(str(path))
    want = {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()}
    assert set(fast) == set(want)
    for n, arr in want.items():
        assert fast[n].dtype == arr.dtype and fast[n].shape == arr.shape
        assert np.array_equal(fast[n], arr), n
        assert fast[n].flags.writeable
    assert ckpt_v1.read(data[:-1]) is None  # not a checkpoint: the caller falls back
    assert ckpt_v1.read(b"") is None


def test_numpy_reader_reuses_a_layout_only_for_the_same_skeleton(tmp_path: Path) -> None:
    import tensorflow as tf

    from app.runtime import ckpt_v1

    lite = LiteSession(models.build_cached("mlp"))
    rng = np.random.default_rng(0)
    for step in range(3):  # the same layout, other values each time: read from the cache
        lite.run("train", {"x": rng.random((4, 28, 28), dtype=np.float32),
                           "y": np.eye(10, dtype=np.float32)[rng.integers(0, 10, 4)]})
        path = tmp_path / f"w{step}.ckpt"
        lite.save(path)
        fast = ckpt_v1.read(path.read_bytes())
        reader = tf.train.load_checkpoint(str(path))
        assert fast is not None
        for n in reader.get_variable_to_shape_map():
            assert np.array_equal(fast[n], reader.get_tensor(n)), (step, n)
    head = LiteSession(models.build_cached("head"))  # another skeleton: parsed, not mixed up
    head.save(tmp_path / "h.ckpt")
    other = ckpt_v1.read((tmp_path / "h.ckpt").read_bytes())
    assert other is not None and set(other) == {"dense/bias", "dense/kernel"}
