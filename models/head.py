"""A softmax classification head on precomputed bottleneck features.

Modelled on TensorFlow's Android model-personalization sample, where a frozen base model
produces the features on device and only this head is trained.
"""

from __future__ import annotations

import tensorflow as tf

from ._base import TrainableModule

FEATURES = 64
CLASSES = 4


class Model(TrainableModule):
    """A single Dense(4) layer with softmax, like the sample's SoftmaxClassifierHead."""

    TRAIN_INPUTS = {"bottleneck": ((FEATURES,), tf.float32), "label": ((), tf.int32)}
    INFER_INPUTS = {"bottleneck": ((FEATURES,), tf.float32)}
    LEARNING_RATE = 0.1

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.w = self.add_param(
            "dense/kernel", self.glorot_uniform((FEATURES, CLASSES), FEATURES, CLASSES)
        )
        self.b = self.add_param("dense/bias", self.zeros((CLASSES,)))

    def logits(self, bottleneck: tf.Tensor) -> tf.Tensor:
        return tf.matmul(bottleneck, self.w) + self.b

    def train(self, bottleneck: tf.Tensor, label: tf.Tensor) -> dict[str, tf.Tensor]:
        def loss() -> tf.Tensor:
            # The sparse op rejects labels outside [0, CLASSES) instead of silently
            # treating them as an all-zero target, as one_hot would.
            xent = tf.nn.sparse_softmax_cross_entropy_with_logits(label, self.logits(bottleneck))
            return tf.reduce_mean(xent)

        return {"loss": self.sgd_step(loss)}

    def infer(self, bottleneck: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"probabilities": tf.nn.softmax(self.logits(bottleneck))}
