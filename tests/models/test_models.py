"""Behaviour of the trainable TFLite models the service trains, checkpoints and serves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import models

REPO = Path(__file__).resolve().parents[2]

# Per-example (non-batch) shape and dtype of every input; shape_signature of every output.
EXPECTED = {
    "mlp": {
        "train": ({"x": ([28, 28], np.float32), "y": ([10], np.float32)}, {"loss": []}),
        "infer": ({"x": ([28, 28], np.float32)}, {"output": [-1, 10], "logits": [-1, 10]}),
    },
    "head": {
        "train": ({"bottleneck": ([64], np.float32), "label": ([], np.int32)}, {"loss": []}),
        "infer": ({"bottleneck": ([64], np.float32)}, {"probabilities": [-1, 4]}),
    },
    "cnn": {
        "train": ({"image": ([64, 64, 3], np.float32), "label": ([10], np.float32)}, {"loss": []}),
        "infer": ({"image": ([64, 64, 3], np.float32)}, {"output": [-1, 10]}),
    },
}
CKPT_NAMES = {"mlp": ["dense_1/bias", "dense_1/kernel", "dense_2/bias", "dense_2/kernel"]}


@pytest.fixture(scope="session")
def model_bytes() -> dict[str, bytes]:
    return {name: models.build_cached(name) for name in models.NAMES}


def interpreter(model: bytes) -> tf.lite.Interpreter:
    return tf.lite.Interpreter(model_content=model, num_threads=1)


def batches(name: str, n: int, batch: int = 32, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Noisy copies of one fixed template per class, so the classes are learnable."""
    rng = np.random.default_rng(seed)
    classes = 4 if name == "head" else 10
    shape = {"mlp": (28, 28), "head": (64,), "cnn": (64, 64, 3)}[name]
    templates = np.random.default_rng(1234).random((classes, *shape), dtype=np.float32)
    out = []
    for _ in range(n):
        labels = rng.integers(0, classes, batch)
        noise = rng.normal(0.0, 0.1, (batch, *shape)).astype(np.float32)
        x = np.clip(templates[labels] + noise, 0.0, 1.0)
        onehot = np.eye(classes, dtype=np.float32)[labels]
        out.append(
            {
                "mlp": {"x": x, "y": onehot},
                "head": {"bottleneck": x, "label": labels.astype(np.int32)},
                "cnn": {"image": x, "label": onehot},
            }[name]
        )
    return out


def infer_inputs(name: str, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: batch[k] for k in EXPECTED[name]["infer"][0]}


def test_names_and_argument_validation() -> None:
    assert models.NAMES == ("mlp", "head", "cnn")
    with pytest.raises(ValueError, match="mlp, head, cnn"):
        models.build("resnet")
    with pytest.raises(ValueError, match="cannot omit"):
        models.build("mlp", omit=("fit",))
    with pytest.raises(ValueError):
        models.build("mlp", omit=models.SIGNATURES)
    with pytest.raises(ValueError):
        models.build("mlp", fixed_batch=0)


@pytest.mark.parametrize("name", models.NAMES)
def test_signatures(name: str, model_bytes: dict[str, bytes]) -> None:
    it = interpreter(model_bytes[name])
    assert set(it.get_signature_list()) == {"train", "infer", "save", "restore"}
    for sig, (inputs, outputs) in EXPECTED[name].items():
        runner = it.get_signature_runner(sig)
        details = runner.get_input_details()
        assert set(details) == set(inputs)
        for key, (shape, dtype) in inputs.items():
            assert details[key]["shape_signature"].tolist() == [-1, *shape], key
            assert details[key]["dtype"] == dtype, key
        got = {k: d["shape_signature"].tolist() for k, d in runner.get_output_details().items()}
        assert got == outputs
    for sig in ("save", "restore"):
        details = it.get_signature_runner(sig).get_input_details()
        assert list(details) == ["checkpoint_path"]
        assert details["checkpoint_path"]["dtype"] == np.bytes_
        assert details["checkpoint_path"]["shape_signature"].tolist() == []


@pytest.mark.parametrize("name", models.NAMES)
def test_training_lowers_loss(name: str, model_bytes: dict[str, bytes]) -> None:
    train = interpreter(model_bytes[name]).get_signature_runner("train")
    data = batches(name, 30)
    losses = [float(train(**batch)["loss"]) for batch in data]
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses


@pytest.mark.parametrize("name", models.NAMES)
def test_restore_then_train_is_bit_identical(
    name: str, model_bytes: dict[str, bytes], tmp_path: Path
) -> None:
    data = batches(name, 8, batch=16)
    ckpt = np.array(str(tmp_path / "ckpt").encode())

    never_stopped = interpreter(model_bytes[name])
    train = never_stopped.get_signature_runner("train")
    infer = never_stopped.get_signature_runner("infer")
    for batch in data[:4]:
        train(**batch)
    never_stopped.get_signature_runner("save")(checkpoint_path=ckpt)
    probe = infer_inputs(name, data[0])
    trained_out = infer(**probe)

    fresh = interpreter(model_bytes[name])
    fresh_infer = fresh.get_signature_runner("infer")
    before = fresh_infer(**probe)
    fresh.get_signature_runner("restore")(checkpoint_path=ckpt)
    after = fresh_infer(**probe)
    for key, value in trained_out.items():
        assert not np.array_equal(before[key], value), "restore had nothing to do"
        assert np.array_equal(after[key], value), key

    fresh_train = fresh.get_signature_runner("train")
    for batch in data[4:]:
        expected, got = train(**batch)["loss"], fresh_train(**batch)["loss"]
        assert np.array_equal(expected, got)
    for key, value in infer(**probe).items():
        assert np.array_equal(fresh_infer(**probe)[key], value), key


def test_mlp_checkpoint_is_a_tf_checkpoint(model_bytes: dict[str, bytes], tmp_path: Path) -> None:
    path = str(tmp_path / "mlp.ckpt")
    it = interpreter(model_bytes["mlp"])
    it.get_signature_runner("train")(**batches("mlp", 1)[0])
    it.get_signature_runner("save")(checkpoint_path=np.array(path.encode()))

    reader = tf.train.load_checkpoint(path)
    shapes = reader.get_variable_to_shape_map()
    assert sorted(shapes) == CKPT_NAMES["mlp"]
    assert shapes["dense_1/kernel"] == [784, 128]
    restored = interpreter(model_bytes["mlp"]).get_signature_runner("restore")(
        checkpoint_path=np.array(path.encode())
    )
    for tensor in CKPT_NAMES["mlp"]:
        assert np.array_equal(reader.get_tensor(tensor), restored[tensor.replace("/", "_")])


def test_head_rejects_out_of_range_labels(model_bytes: dict[str, bytes]) -> None:
    train = interpreter(model_bytes["head"]).get_signature_runner("train")
    bottleneck = np.zeros((2, 64), np.float32)
    with pytest.raises(RuntimeError, match="outside the valid range"):
        train(bottleneck=bottleneck, label=np.array([0, 4], np.int32))


def test_initial_weights_depend_only_on_seed(model_bytes: dict[str, bytes]) -> None:
    probe = infer_inputs("head", batches("head", 1)[0])
    cached = interpreter(model_bytes["head"]).get_signature_runner("infer")(**probe)
    rebuilt = interpreter(models.build("head")).get_signature_runner("infer")(**probe)
    other = interpreter(models.build_cached("head", seed=1)).get_signature_runner("infer")(**probe)
    assert np.array_equal(cached["probabilities"], rebuilt["probabilities"])
    assert not np.allclose(cached["probabilities"], other["probabilities"])


def test_omit_train_makes_an_untrainable_model() -> None:
    it = interpreter(models.build_cached("mlp", omit=("train",)))
    assert set(it.get_signature_list()) == {"infer", "save", "restore"}


def test_fixed_batch() -> None:
    it = interpreter(models.build_cached("mlp", fixed_batch=8))
    train = it.get_signature_runner("train")
    details = train.get_input_details()
    assert details["x"]["shape_signature"].tolist() == [8, 28, 28]
    assert details["y"]["shape_signature"].tolist() == [8, 10]
    infer = it.get_signature_runner("infer")
    assert infer.get_input_details()["x"]["shape_signature"].tolist() == [8, 28, 28]
    assert np.isfinite(train(**batches("mlp", 1, batch=8)[0])["loss"])


def test_build_cached_builds_once_per_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_build(name: str, **kw: object) -> bytes:
        calls.append((name, kw))
        return f"{name}{kw}".encode()

    monkeypatch.setattr(models, "build", fake_build)
    first = models.build_cached("head", cache_dir=tmp_path, omit=("save", "restore"))
    again = models.build_cached("head", cache_dir=tmp_path, omit=["restore", "save"])
    other = models.build_cached("head", cache_dir=tmp_path, fixed_batch=4)
    assert first == again != other
    assert len(calls) == 2
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".tflite", ".tflite"]


def test_cli_build_and_list(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "head.tflite"
    cmd = [sys.executable, "-m", "models", "build", "head", str(out)]
    cmd += ["--fixed-batch", "4", "--omit", "save", "restore"]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "head" in result.stdout and "train(" in result.stdout
    it = interpreter(out.read_bytes())
    assert set(it.get_signature_list()) == {"train", "infer"}
    details = it.get_signature_runner("infer").get_input_details()
    assert details["bottleneck"]["shape_signature"].tolist() == [4, 64]

    listing = subprocess.run(
        [sys.executable, "-m", "models", "list"], cwd=REPO, capture_output=True, text=True
    )
    assert listing.returncode == 0
    assert [line.split()[0] for line in listing.stdout.splitlines()] == list(models.NAMES)
