"""Keras models no one here wrote, built as a user would and saved as .keras (or .h5) bytes.
No test lives here: the conversion tests import these builders."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def keras_bytes(model: Any, suffix: str = ".keras") -> bytes:
    """The model saved the way Keras saves it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"m{suffix}"
        model.save(path)
        return path.read_bytes()


def mlp(seed: int = 0) -> Any:
    """A Sequential MLP on 28x28 digits: x [28,28] -> 10 softmax."""
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((28, 28), name="x"), keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu", name="hidden"),
        keras.layers.Dense(10, activation="softmax", name="out"),
    ], name="mlp")


def cnn_bn(seed: int = 0) -> Any:
    """A functional CNN with BatchNorm (to freeze) and a Dense head named "head"."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    x = keras.Input((28, 28), name="x")
    h = layers.Reshape((28, 28, 1))(x)
    h = layers.Conv2D(8, 3, strides=2, padding="same", name="conv")(h)
    h = layers.BatchNormalization(name="bn")(h)
    h = layers.ReLU()(h)
    h = layers.GlobalAveragePooling2D()(h)
    out = layers.Dense(10, activation="softmax", name="head")(h)
    return keras.Model(x, out, name="cnn_bn")


def cnn_plain(seed: int = 0) -> Any:
    """The hand-written models/cnn.py network, written in Keras: 64x64x3 -> 10 logits."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    image = keras.Input((64, 64, 3), name="image")
    h = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv_1")(image)
    h = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv_2")(h)
    h = layers.Flatten()(h)
    return keras.Model(image, layers.Dense(10, name="dense")(h), name="cnn")


def mobilenet(seed: int = 0) -> Any:
    """The blog's transfer-learning shape: MobileNetV2 (alpha 0.35, 96x96, no weights) and a
    trainable Dense head."""
    import keras

    keras.utils.set_random_seed(seed)
    base = keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), weights=None,
                                          include_top=False)
    image = keras.Input((96, 96, 3), name="x")
    h = keras.layers.GlobalAveragePooling2D()(base(image))
    out = keras.layers.Dense(4, activation="softmax", name="head")(h)
    return keras.Model(image, out, name="transfer")


def text(seed: int = 0, vocab: int = 50, length: int = 12) -> Any:
    """A small text classifier: int tokens -> Embedding -> mean pooling -> Dense."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    tokens = keras.Input((length,), dtype="int32", name="x")
    h = layers.Embedding(vocab, 8, name="embed")(tokens)
    h = layers.GlobalAveragePooling1D()(h)
    h = layers.Dense(16, activation="relu", name="hidden")(h)
    return keras.Model(tokens, layers.Dense(2, name="logits")(h), name="text")
