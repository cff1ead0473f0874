"""The blog's MLP: 28x28 image -> Dense 128 ReLU -> Dense 10, softmax cross-entropy, SGD."""

from __future__ import annotations

import tensorflow as tf

from ._base import TrainableModule


class Model(TrainableModule):
    """Flatten -> Dense(128, relu) -> Dense(10)."""

    TRAIN_INPUTS = {"x": ((28, 28), tf.float32), "y": ((10,), tf.float32)}
    INFER_INPUTS = {"x": ((28, 28), tf.float32)}
    LEARNING_RATE = 0.1

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.w1 = self.add_param("dense_1/kernel", self.he_normal((784, 128), 784))
        self.b1 = self.add_param("dense_1/bias", self.zeros((128,)))
        self.w2 = self.add_param("dense_2/kernel", self.glorot_uniform((128, 10), 128, 10))
        self.b2 = self.add_param("dense_2/bias", self.zeros((10,)))

    def logits(self, x: tf.Tensor) -> tf.Tensor:
        hidden = tf.nn.relu(tf.matmul(tf.reshape(x, [-1, 784]), self.w1) + self.b1)
        return tf.matmul(hidden, self.w2) + self.b2

    def train(self, x: tf.Tensor, y: tf.Tensor) -> dict[str, tf.Tensor]:
        def loss() -> tf.Tensor:
            return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(y, self.logits(x)))

        return {"loss": self.sgd_step(loss)}

    def infer(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = self.logits(x)
        return {"output": tf.nn.softmax(logits), "logits": logits}
