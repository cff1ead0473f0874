"""Export a tf.Module to a SavedModel and convert it to a TFLite flatbuffer with Flex ops."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import tensorflow as tf


def to_tflite(module: tf.Module, signatures: dict[str, object]) -> bytes:
    """Return .tflite bytes exposing `signatures` (name -> concrete function) of `module`."""
    if not signatures:
        raise ValueError("a model needs at least one signature")
    with tempfile.TemporaryDirectory(prefix="fleetlite-sm-") as tmp:
        saved = str(Path(tmp) / "saved_model")
        tf.saved_model.save(module, saved, signatures=signatures)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=list(signatures))
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS,
            # Gradient, Save and Restore ops have no builtin kernels.
            tf.lite.OpsSet.SELECT_TF_OPS,
        ]
        converter.experimental_enable_resource_variables = True
        absl_logger = logging.getLogger("absl")
        level = absl_logger.level
        # The converter logs a multi-line INFO/WARNING banner per conversion via absl.
        absl_logger.setLevel(logging.ERROR)
        try:
            return converter.convert()
        finally:
            absl_logger.setLevel(level)
