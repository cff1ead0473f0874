"""Shared machinery for trainable TFLite models: parameters, SGD, checkpoint signatures."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from . import SIGNATURES

# (per-example shape, dtype) for each input, in argument order.
InputSpecs = dict[str, tuple[tuple[int, ...], tf.DType]]


class TrainableModule(tf.Module):
    """A tf.Module whose variables are all named checkpoint tensors, trained by plain SGD.

    Subclasses set TRAIN_INPUTS / INFER_INPUTS and define `train` / `infer` methods whose
    argument names equal those keys (the names become the TFLite signature input names).
    """

    TRAIN_INPUTS: InputSpecs = {}
    INFER_INPUTS: InputSpecs = {}
    LEARNING_RATE: float = 0.1

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        # NumPy rather than tf.random so initial weights depend only on the seed.
        self._rng = np.random.default_rng(seed)
        self.params: list[tf.Variable] = []
        self.param_names: list[str] = []

    def add_param(self, name: str, value: np.ndarray) -> tf.Variable:
        """Create a variable saved under checkpoint tensor `name` (e.g. "dense_1/kernel")."""
        var = tf.Variable(value.astype(np.float32), name=name)
        self.params.append(var)
        self.param_names.append(name)
        return var

    def zeros(self, shape: Sequence[int]) -> np.ndarray:
        """Zero initial values (biases)."""
        return np.zeros(shape)

    def he_normal(self, shape: Sequence[int], fan_in: int) -> np.ndarray:
        """He-normal initial values, suited to layers followed by ReLU."""
        return self._rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)

    def glorot_uniform(self, shape: Sequence[int], fan_in: int, fan_out: int) -> np.ndarray:
        """Glorot-uniform initial values, suited to the logits layer."""
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return self._rng.uniform(-limit, limit, size=shape)

    def sgd_step(self, loss_fn: Callable[[], tf.Tensor]) -> tf.Tensor:
        """Apply one SGD update to every parameter; return the pre-update loss."""
        with tf.GradientTape() as tape:
            loss = loss_fn()
        grads = tape.gradient(loss, self.params)
        for var, grad in zip(self.params, grads, strict=True):
            var.assign_sub(self.LEARNING_RATE * grad)
        return loss

    def save(self, checkpoint_path: tf.Tensor) -> dict[str, tf.Tensor]:
        """Write every variable to a TF V1 checkpoint at `checkpoint_path`."""
        # SGD has no slots, so the parameters are the complete training state.
        tf.raw_ops.Save(
            filename=checkpoint_path,
            tensor_names=self.param_names,
            data=[v.read_value() for v in self.params],
            name="save",
        )
        return {"checkpoint_path": checkpoint_path}

    def restore(self, checkpoint_path: tf.Tensor) -> dict[str, tf.Tensor]:
        """Load every variable from the checkpoint written by `save`."""
        out = {}
        for name, var in zip(self.param_names, self.params, strict=True):
            value = tf.raw_ops.Restore(
                file_pattern=checkpoint_path, tensor_name=name, dt=var.dtype, name="restore"
            )
            var.assign(value)
            out[name.replace("/", "_")] = value
        return out

    def concrete_functions(
        self, omit: Sequence[str] = (), fixed_batch: int | None = None
    ) -> dict[str, tf.types.experimental.ConcreteFunction]:
        """Trace the kept signatures with batch dimension `fixed_batch` (None = dynamic)."""
        path_spec = {"checkpoint_path": ((), tf.string)}
        specs = {
            "train": (self.train, self.TRAIN_INPUTS, True),
            "infer": (self.infer, self.INFER_INPUTS, True),
            "save": (self.save, path_spec, False),
            "restore": (self.restore, path_spec, False),
        }
        fns = {}
        for sig in SIGNATURES:
            if sig in omit:
                continue
            method, inputs, batched = specs[sig]
            params = list(inspect.signature(method).parameters)
            if params != list(inputs):
                raise TypeError(f"{type(self).__name__}.{sig} arguments {params} != {list(inputs)}")
            input_signature = [
                tf.TensorSpec((fixed_batch, *shape) if batched else shape, dtype, name=name)
                for name, (shape, dtype) in inputs.items()
            ]
            fns[sig] = tf.function(method, input_signature=input_signature).get_concrete_function()
        return fns

    def train(self, *args: tf.Tensor) -> dict[str, tf.Tensor]:
        raise NotImplementedError

    def infer(self, *args: tf.Tensor) -> dict[str, tf.Tensor]:
        raise NotImplementedError
