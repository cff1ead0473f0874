"""A Keras model made into the blog's trainable module (train, infer, save, restore) and
converted to a .tflite with Select TF ops and resource variables.

Runs in the conversion child (app.runtime.keras_child): it imports Keras and loads
untrusted files. Layers always run in inference mode (`training=False`), in `train` too:
BatchNorm uses its moving statistics and Dropout is off, as on-device fine-tuning does.
The trainable layers' trainable weights become variables named by their Keras paths; every
other weight (frozen layers, BatchNorm statistics) is a constant of the graph, so it cannot
move. Optimizer slots are variables under `optimizer/`, saved by `save`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from app.runtime.keras_options import SLOT_PREFIX, Adam, ConvertOptions
from models._convert import to_tflite  # the seed models' SavedModel -> Flex .tflite step

# Layer classes whose inference-mode ops the converter and the Flex runtime both handle,
# gradients included; anything else is refused by name rather than failing half-way.
SUPPORTED_LAYERS = frozenset({
    "InputLayer", "Sequential", "Functional", "Model",
    "Dense", "EinsumDense", "Conv1D", "Conv2D", "DepthwiseConv2D", "SeparableConv2D",
    "Conv2DTranspose", "Embedding", "BatchNormalization", "LayerNormalization",
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
    "Flatten", "Reshape", "Permute", "RepeatVector",
    "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax",
    "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D",
    "GlobalMaxPooling2D", "ZeroPadding1D", "ZeroPadding2D", "Cropping1D", "Cropping2D",
    "UpSampling1D", "UpSampling2D", "Add", "Subtract", "Multiply", "Average", "Maximum",
    "Minimum", "Concatenate", "Rescaling", "Normalization", "Identity",
})
_DTYPES = {"float32": tf.float32, "int32": tf.int32, "int64": tf.int64}


class ConvertError(Exception):
    """The Keras file or the options cannot make a trainable model; the message says why."""


@dataclass(frozen=True)
class Converted:
    """The .tflite bytes and what the conversion decided."""

    tflite: bytes
    trainable_layers: list[str]
    variables: list[str]


def load_keras(path: Path) -> Any:
    """The Keras model in `path`, loaded with safe_mode on and without its compile state."""
    import keras

    try:
        return keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad file
        text = str(exc)
        if "safe_mode" in text or "Lambda" in text or "lambda" in text:
            raise ConvertError("the file holds a Lambda layer or pickled Python code, which "
                               "safe mode refuses to load") from None
        raise ConvertError(f"not a loadable Keras model: {type(exc).__name__}: "
                           f"{text.splitlines()[0][:300] if text else ''}") from None


def _walk(layer: Any) -> list[Any]:
    out = []
    for sub in getattr(layer, "layers", []):
        out.append(sub)
        out.extend(_walk(sub))
    return out


def check_layers(model: Any) -> None:
    """Refuse, by name, the first layer whose kind the converter does not support."""
    if not getattr(model, "outputs", None):
        raise ConvertError(f"the file holds a {type(model).__name__} with no functional "
                           "inputs and outputs; save a built Sequential or functional model")
    for layer in _walk(model):
        kind = type(layer).__name__
        if kind not in SUPPORTED_LAYERS:
            raise ConvertError(f"layer '{layer.name}' ({kind}) is not supported; supported "
                               f"kinds: {', '.join(sorted(SUPPORTED_LAYERS))}")
    if len(model.outputs) != 1:
        raise ConvertError(f"the model has {len(model.outputs)} outputs; one is supported")


def choose_trainable(model: Any, trainable: str | list[str]) -> list[str]:
    """Set which layers train (the others are frozen); their names."""
    top = [layer for layer in model.layers if layer.weights]
    everything = {layer.name: layer for layer in _walk(model)}
    if trainable == "all":
        chosen = top
    elif isinstance(trainable, str):
        n = int(trainable.split(":")[1])
        if n > len(top):
            raise ConvertError(f"options.trainable: 'last:{n}' but the model has {len(top)} "
                               "layers with weights")
        chosen = top[-n:]
    else:
        unknown = [name for name in trainable if name not in everything]
        if unknown:
            raise ConvertError(f"options.trainable: no layer named '{unknown[0]}'")
        chosen = [everything[name] for name in trainable]
    # Keras propagates `trainable` down a sub-model: open everything, close the leaves,
    # then open the chosen layers (a chosen sub-model trains as a whole).
    model.trainable = True
    for layer in everything.values():
        if not getattr(layer, "layers", None):
            layer.trainable = False
    for layer in chosen:
        layer.trainable = True
    if not model.trainable_variables:
        raise ConvertError("options.trainable: the chosen layers have no trainable weights")
    return [layer.name for layer in chosen]


class _Holder:
    """Keeps the Keras model and the constants out of tf.Module's tracking."""

    def __init__(self, model: Any, frozen: list[np.ndarray]) -> None:
        self.model, self.frozen = model, frozen


class KerasModule(tf.Module):
    """The blog's four functions around a Keras model's stateless call."""

    def __init__(self, model: Any, options: ConvertOptions) -> None:
        super().__init__()
        import keras

        self._h = _Holder(model, [v.numpy() for v in model.non_trainable_variables])
        self.opts = options
        self.params = [tf.Variable(v.numpy(), name=v.path) for v in model.trainable_variables]
        names = [v.path for v in model.trainable_variables]
        if len(set(names)) != len(names):
            raise ConvertError("two trainable weights share a Keras path; rename the layers")
        self.slots: list[list[tf.Variable]] = []
        slot_kinds = {"sgd": ["momentum"] if options.optimizer.momentum else []
                      } if not isinstance(options.optimizer, Adam) else {"adam": ["m", "v"]}
        kinds = next(iter(slot_kinds.values()))
        for kind in kinds:
            self.slots.append([tf.Variable(tf.zeros_like(p), name=f"{SLOT_PREFIX}{n}/{kind}")
                               for p, n in zip(self.params, names, strict=True)])
        self.iterations = tf.Variable(0.0, name=f"{SLOT_PREFIX}iterations")
        self.names = names + [f"{SLOT_PREFIX}{n}/{k}" for k in kinds for n in names] + [
            f"{SLOT_PREFIX}iterations"]
        self.state = self.params + [v for group in self.slots for v in group] + [
            self.iterations]
        losses = {"categorical_crossentropy": keras.losses.CategoricalCrossentropy,
                  "sparse_categorical_crossentropy": keras.losses.SparseCategoricalCrossentropy,
                  "binary_crossentropy": keras.losses.BinaryCrossentropy}
        if options.loss == "mse":
            self._loss = keras.losses.MeanSquaredError()
        else:
            self._loss = losses[options.loss](from_logits=options.from_logits)

    def _call(self, params: list[tf.Tensor], inputs: list[tf.Tensor]) -> tuple[Any, Any]:
        frozen = [tf.constant(v) for v in self._h.frozen]
        args = inputs[0] if len(inputs) == 1 else inputs
        out, _, losses = self._h.model.stateless_call(params, frozen, args, training=False,
                                                      return_losses=True)
        return out, losses

    def train(self, *tensors: tf.Tensor) -> dict[str, tf.Tensor]:
        """One optimizer step on a batch; the loss before it."""
        *inputs, label = tensors
        with tf.GradientTape() as tape:
            params = [p.read_value() for p in self.params]
            for p in params:
                tape.watch(p)
            out, extra = self._call(params, inputs)
            loss = self._loss(label, out)
            if extra:
                loss = loss + tf.add_n(extra)
        grads = tape.gradient(loss, params)
        self._apply(grads)
        return {"loss": loss}

    def _apply(self, grads: list[tf.Tensor]) -> None:
        opt = self.opts.optimizer
        lr = tf.constant(opt.learning_rate, tf.float32)
        if isinstance(opt, Adam):
            step = self.iterations + 1.0
            b1, b2 = tf.constant(opt.beta_1), tf.constant(opt.beta_2)
            alpha = lr * tf.sqrt(1.0 - tf.pow(b2, step)) / (1.0 - tf.pow(b1, step))
            for var, g, m, v in zip(self.params, grads, *self.slots, strict=True):
                m.assign_add((g - m) * (1.0 - b1))
                v.assign_add((tf.square(g) - v) * (1.0 - b2))
                var.assign_sub((m * alpha) / (tf.sqrt(v) + opt.epsilon))
        elif self.slots:
            momentum = tf.constant(opt.momentum, tf.float32)
            for var, g, m in zip(self.params, grads, self.slots[0], strict=True):
                m.assign(m * momentum - g * lr)
                var.assign_add(m)
        else:
            for var, g in zip(self.params, grads, strict=True):
                var.assign_sub(g * lr)
        self.iterations.assign_add(1.0)

    def infer(self, *inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        """The model's output in inference mode."""
        out, _ = self._call([p.read_value() for p in self.params], list(inputs))
        return {"output": out}

    def save(self, checkpoint_path: tf.Tensor) -> dict[str, tf.Tensor]:
        """Write every variable (weights and optimizer slots) to a V1 checkpoint."""
        tf.raw_ops.Save(filename=checkpoint_path, tensor_names=self.names,
                        data=[v.read_value() for v in self.state], name="save")
        return {"checkpoint_path": checkpoint_path}

    def restore(self, checkpoint_path: tf.Tensor) -> dict[str, tf.Tensor]:
        """Load every variable from a checkpoint written by `save`."""
        out = {}
        for name, var in zip(self.names, self.state, strict=True):
            value = tf.raw_ops.Restore(file_pattern=checkpoint_path, tensor_name=name,
                                       dt=var.dtype, name="restore")
            var.assign(value)
            out[name.replace("/", "_")] = value
        return out


def _specs(model: Any, options: ConvertOptions) -> tuple[list[tf.TensorSpec], tf.TensorSpec]:
    inputs = []
    for tensor in model.inputs:
        name = tensor.name.split(":")[0]
        if name == options.label.name:
            raise ConvertError(f"options.label.name: '{name}' is also a model input's name")
        inputs.append(tf.TensorSpec((None, *tensor.shape[1:]), tf.as_dtype(tensor.dtype),
                                    name=name))
    out_shape = tuple(model.outputs[0].shape[1:])
    if None in out_shape:
        raise ConvertError(f"the model's output shape {list(out_shape)} is not fixed")
    label = options.label
    sparse = options.loss == "sparse_categorical_crossentropy"
    shape = tuple(label.shape) if label.shape is not None else (
        out_shape[:-1] if sparse else out_shape)
    dtype = _DTYPES[label.dtype] if label.dtype else (tf.int32 if sparse else tf.float32)
    return inputs, tf.TensorSpec((None, *shape), dtype, name=label.name)


def convert(model: Any, options: ConvertOptions) -> Converted:
    """The model as a trainable .tflite, or ConvertError saying why not."""
    check_layers(model)
    chosen = choose_trainable(model, options.trainable)
    module = KerasModule(model, options)
    inputs, label = _specs(model, options)
    path = tf.TensorSpec((), tf.string, name="checkpoint_path")
    fns = {
        "train": tf.function(module.train, input_signature=[*inputs, label]),
        "infer": tf.function(module.infer, input_signature=inputs),
        "save": tf.function(module.save, input_signature=[path]),
        "restore": tf.function(module.restore, input_signature=[path]),
    }
    try:
        concrete = {k: f.get_concrete_function() for k, f in fns.items()}
        tflite = to_tflite(module, concrete)
    except ConvertError:
        raise
    except Exception as exc:  # noqa: BLE001 - tracing and the converter raise many types
        first = str(exc).strip().splitlines()[0][:400] if str(exc).strip() else ""
        raise ConvertError(f"the model could not be converted: {type(exc).__name__}: "
                           f"{first}") from None
    return Converted(tflite, chosen, list(module.names))
