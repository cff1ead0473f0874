"""A small convolutional classifier, heavy enough per step to be useful in benchmarks."""

from __future__ import annotations

import tensorflow as tf

from ._base import TrainableModule

_FLAT = 16 * 16 * 32  # 64x64 input after two stride-2 convs, 32 channels


class Model(TrainableModule):
    """Conv3x3/2(16) ReLU -> Conv3x3/2(32) ReLU -> flatten -> Dense(10)."""

    TRAIN_INPUTS = {"image": ((64, 64, 3), tf.float32), "label": ((10,), tf.float32)}
    INFER_INPUTS = {"image": ((64, 64, 3), tf.float32)}
    LEARNING_RATE = 0.01

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.k1 = self.add_param("conv_1/kernel", self.he_normal((3, 3, 3, 16), 3 * 3 * 3))
        self.b1 = self.add_param("conv_1/bias", self.zeros((16,)))
        self.k2 = self.add_param("conv_2/kernel", self.he_normal((3, 3, 16, 32), 3 * 3 * 16))
        self.b2 = self.add_param("conv_2/bias", self.zeros((32,)))
        self.w = self.add_param("dense/kernel", self.glorot_uniform((_FLAT, 10), _FLAT, 10))
        self.b = self.add_param("dense/bias", self.zeros((10,)))

    def logits(self, image: tf.Tensor) -> tf.Tensor:
        # Stride 2 rather than full-resolution conv + max pool: ~15 ms per batch-32 step
        # instead of ~75 ms keeps benchmarks compute-bound without making them slow.
        h = tf.nn.relu(tf.nn.conv2d(image, self.k1, strides=2, padding="SAME") + self.b1)
        h = tf.nn.relu(tf.nn.conv2d(h, self.k2, strides=2, padding="SAME") + self.b2)
        # Flatten rather than global-average-pool: pooling would throw away where things
        # are, leaving only per-channel statistics to classify on.
        h = tf.reshape(h, [-1, _FLAT])
        return tf.matmul(h, self.w) + self.b

    def train(self, image: tf.Tensor, label: tf.Tensor) -> dict[str, tf.Tensor]:
        def loss() -> tf.Tensor:
            xent = tf.nn.softmax_cross_entropy_with_logits(label, self.logits(image))
            return tf.reduce_mean(xent)

        return {"loss": self.sgd_step(loss)}

    def infer(self, image: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"output": tf.nn.softmax(self.logits(image))}
