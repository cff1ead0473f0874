"""Keras models converted into the blog's trainable module: a train step moves every weight
as Keras's own step does, infer answers as predict does, frozen layers never move, layers run
in inference mode; and the child refuses what it must, keeping nothing."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.runtime.keras_child import KerasRefused, convert_keras
from app.runtime.keras_options import OptionsError, parse_options
from tests.models import test_convert_builders as build

OPTIMIZERS = {
    "sgd": ({"name": "sgd", "learning_rate": 0.1}, lambda k: k.optimizers.SGD(0.1)),
    "momentum": ({"name": "sgd", "learning_rate": 0.05, "momentum": 0.9},
                 lambda k: k.optimizers.SGD(0.05, momentum=0.9)),
    "adam": ({"name": "adam", "learning_rate": 0.01},
             lambda k: k.optimizers.Adam(0.01)),
}


def _convert(model: Any, **options: Any) -> tuple[Any, list[str], bytes]:
    import tensorflow as tf

    from app.runtime.keras_convert import convert

    done = convert(model, parse_options(options))
    return tf.lite.Interpreter(model_content=done.tflite), done.variables, done.tflite


def _saved(interpreter: Any) -> dict[str, np.ndarray]:
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "w.ckpt")
        interpreter.get_signature_runner("save")(checkpoint_path=np.array(path.encode()))
        reader = tf.train.load_checkpoint(path)
        return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()}


def _batch(n: int = 16, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.random((n, 28, 28), dtype=np.float32)
    return x, np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_train_step_moves_every_weight_as_keras_does(opt: str) -> None:
    import keras

    ours, theirs = build.mlp(), build.mlp()
    theirs.set_weights(ours.get_weights())
    lite, names, _ = _convert(ours, optimizer=OPTIMIZERS[opt][0], label={"name": "y"})
    theirs.compile(optimizer=OPTIMIZERS[opt][1](keras), loss="categorical_crossentropy")
    train = lite.get_signature_runner("train")
    for step in range(3):  # several steps, so the optimizer's slots count too
        x, y = _batch(seed=step)
        loss = float(train(x=x, y=y)["loss"])
        assert np.isclose(loss, float(theirs.train_on_batch(x, y)), rtol=1e-5, atol=1e-5)
        saved = _saved(lite)
        for var in theirs.trainable_variables:
            assert np.abs(saved[var.path] - var.numpy()).max() < 1e-5, (step, var.path)
    assert sorted(saved) == sorted(names)
    assert all(n.startswith("optimizer/") for n in saved if n not in
               {v.path for v in theirs.trainable_variables})


@pytest.mark.parametrize("loss,from_logits", [("sparse_categorical_crossentropy", True),
                                              ("binary_crossentropy", False), ("mse", False)])
def test_train_step_matches_keras_for_each_loss(loss: str, from_logits: bool) -> None:
    import keras

    model = build.text() if loss.startswith("sparse") else build.mlp()
    theirs = keras.models.clone_model(model)
    theirs.set_weights(model.get_weights())
    lite, _, _ = _convert(model, loss=loss, from_logits=from_logits, label={"name": "y"})
    rng = np.random.default_rng(3)
    if loss.startswith("sparse"):
        x, y = rng.integers(0, 50, (8, 12)).astype(np.int32), rng.integers(0, 2, 8).astype(
            np.int32)
    else:
        x, y = _batch(8)
    losses = {"sparse_categorical_crossentropy": keras.losses.SparseCategoricalCrossentropy,
              "binary_crossentropy": keras.losses.BinaryCrossentropy}
    theirs.compile(optimizer=keras.optimizers.SGD(0.01), loss=losses[loss](
        from_logits=from_logits) if loss in losses else keras.losses.MeanSquaredError())
    got = float(lite.get_signature_runner("train")(x=x, y=y)["loss"])
    assert abs(got - float(theirs.train_on_batch(x, y))) < 1e-5
    saved = _saved(lite)
    for var in theirs.trainable_variables:
        assert np.abs(saved[var.path] - var.numpy()).max() < 1e-5, var.path


def test_infer_answers_as_predict() -> None:
    model = build.cnn_plain()
    lite, _, _ = _convert(model, from_logits=True, label={"name": "label"})
    x = np.random.default_rng(0).random((4, 64, 64, 3), dtype=np.float32)
    got = lite.get_signature_runner("infer")(image=x)["output"]
    assert np.abs(got - model.predict(x, verbose=0)).max() < 1e-5


def test_frozen_layers_stay_bit_identical_and_batchnorm_uses_moving_stats() -> None:
    import keras

    model = build.cnn_bn()
    bn = model.get_layer("bn")
    bn.moving_mean.assign(np.linspace(-0.5, 0.5, 8, dtype=np.float32))
    bn.moving_variance.assign(np.linspace(0.5, 2.0, 8, dtype=np.float32))
    frozen = {w.path: w.numpy().copy() for w in model.weights if not w.path.startswith("head")}
    lite, names, _ = _convert(model, trainable=["head"], optimizer={"name": "adam"},
                              label={"name": "y"})
    assert [n for n in names if not n.startswith("optimizer/")] == ["head/kernel", "head/bias"]
    train = lite.get_signature_runner("train")
    for step in range(25):
        train(x=_batch(seed=step)[0], y=_batch(seed=step)[1])
    saved = _saved(lite)
    # The frozen part is constants of the graph: rebuilt from the original weights plus the
    # trained head, a Keras model answers as infer does, BatchNorm in inference mode.
    twin = build.cnn_bn()
    for w in twin.weights:
        w.assign(frozen[w.path] if w.path in frozen else saved[w.path])
    assert not np.array_equal(saved["head/kernel"], model.get_layer("head").kernel.numpy())
    x = _batch(seed=99)[0]
    got = lite.get_signature_runner("infer")(x=x)["output"]
    assert np.abs(got - twin(x, training=False).numpy()).max() < 1e-5
    assert np.abs(got - twin(x, training=True).numpy()).max() > 1e-3  # batch stats differ
    assert all(np.array_equal(frozen[w.path], w.numpy()) for w in model.weights
               if w.path in frozen)
    assert isinstance(keras.layers.BatchNormalization, type)


def test_dropout_is_off_in_train_and_infer() -> None:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28), name="x"), keras.layers.Flatten(),
                              keras.layers.Dense(16), keras.layers.Dropout(0.5),
                              keras.layers.Dense(10, activation="softmax")])
    lite, _, _ = _convert(model, optimizer={"name": "sgd", "learning_rate": 0.0001},
                          label={"name": "y"})
    x, y = _batch(8)
    expected = float(keras.losses.CategoricalCrossentropy()(y, model(x, training=False)))
    assert abs(float(lite.get_signature_runner("train")(x=x, y=y)["loss"]) - expected) < 1e-5
    infer = lite.get_signature_runner("infer")
    assert np.array_equal(infer(x=x)["output"], infer(x=x)["output"])


@pytest.mark.parametrize("options,field", [
    ({"optimiser": {}}, "options.optimiser"),
    ({"optimizer": {"name": "rmsprop"}}, "options.optimizer"),
    ({"optimizer": {"name": "sgd", "nesterov": True}}, "options.optimizer.nesterov"),
    ({"loss": "hinge"}, "options.loss"),
    ({"trainable": "first:2"}, "options.trainable"),
    ({"label": {"name": "y", "shape": [0]}}, "options.label.shape"),
])
def test_parse_options_refuses_naming_the_option(options: dict[str, Any], field: str) -> None:
    with pytest.raises(OptionsError) as err:
        parse_options(options)
    assert str(err.value).startswith(field), str(err.value)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_convert_keras_refuses_a_lambda_layer(suffix: str) -> None:
    import keras

    model = keras.Sequential([keras.Input((4,), name="x"), keras.layers.Lambda(lambda t: t * 2),
                              keras.layers.Dense(2)])
    with pytest.raises(KerasRefused, match="Lambda layer or pickled Python code"):
        convert_keras(build.keras_bytes(model, suffix), parse_options({}))


def test_convert_takes_every_input_of_a_multi_input_model() -> None:
    import keras

    a, c = keras.Input((3,), name="a"), keras.Input((2,), name="c")
    model = keras.Model([a, c], keras.layers.Dense(1, name="d")(
        keras.layers.Concatenate()([a, c])))
    lite, _, _ = _convert(model, loss="mse")
    assert lite.get_signature_list()["train"]["inputs"] == ["a", "c", "label"]
    xa, xc = np.ones((2, 3), np.float32), np.ones((2, 2), np.float32)
    got = lite.get_signature_runner("infer")(a=xa, c=xc)["output"]
    assert np.abs(got - model.predict([xa, xc], verbose=0)).max() < 1e-5


def test_convert_keras_refuses_an_unsupported_layer_by_name() -> None:
    import keras

    model = keras.Sequential([keras.Input((5, 3), name="x"), keras.layers.LSTM(4, name="memory"),
                              keras.layers.Dense(2)])
    with pytest.raises(KerasRefused, match="layer 'memory' \\(LSTM\\) is not supported"):
        convert_keras(build.keras_bytes(model), parse_options({}))


@pytest.mark.parametrize("data", [b"", b"hello, world", b"PK\x03\x04not really a zip"])
def test_convert_keras_refuses_what_is_not_a_keras_model(data: bytes, tmp_path: Path) -> None:
    with pytest.raises(KerasRefused, match="not a"):
        convert_keras(data, parse_options({}), work_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # nothing kept


def test_convert_keras_refuses_an_unknown_layer_name_and_keeps_nothing(tmp_path: Path) -> None:
    with pytest.raises(KerasRefused, match="no layer named 'dense_9'"):
        convert_keras(build.keras_bytes(build.mlp()), parse_options({"trainable": ["dense_9"]}),
                      work_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_convert_keras_stops_at_its_time_and_memory_limits(tmp_path: Path) -> None:
    data = build.keras_bytes(build.mlp())
    with pytest.raises(KerasRefused, match="did not finish within 0.5 s"):
        convert_keras(data, parse_options({}), work_dir=tmp_path, timeout=0.5)
    with pytest.raises(KerasRefused, match="memory limit of 256 MiB"):
        convert_keras(data, parse_options({}), work_dir=tmp_path, memory_bytes=256 << 20)
    assert list(tmp_path.iterdir()) == []


def test_convert_keras_reads_a_legacy_h5_file() -> None:
    model = build.mlp()
    done = convert_keras(build.keras_bytes(model, ".h5"), parse_options({"label": {"name": "y"}}))
    assert done.format == "h5"
    assert done.trainable_layers == [layer.name for layer in model.layers if layer.weights]
    import tensorflow as tf

    lite = tf.lite.Interpreter(model_content=done.tflite)
    x = _batch(4)[0]
    got = lite.get_signature_runner("infer")(x=x)["output"]
    assert np.abs(got - model.predict(x, verbose=0)).max() < 1e-5
