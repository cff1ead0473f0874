"""Checkpoints in the models' own save format (TensorFlow V1, tf.raw_ops.Save) as named arrays.

No interpreter is built: `read` parses the format in numpy (ckpt_v1.py) or falls back to
TensorFlow's checkpoint reader, `write` runs the same
Save kernel the models' `save` signature runs through the Flex delegate, eagerly. Measured
on the seed MLP: `write(read(x)) == x` byte for byte, and the same arrays give the same
bytes whatever their order. Both are safe to call from several threads at once.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from app.runtime import ckpt_v1

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The V1 reader treats its path as a file pattern, so the scratch directory must not hold one.
_GLOB = frozenset("*?[]\\")


def _tf() -> Any:
    # Imported lazily: `import tensorflow` costs ~2 s and ~500 MB, paid once per process.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import tensorflow as tf
    return tf


def read(data: bytes, scratch: Path) -> dict[str, np.ndarray]:
    """The named arrays of a checkpoint file's bytes: parsed in numpy when it holds float
    tensors whole (ckpt_v1, the per-update path), else by TensorFlow from a temp file."""
    fast = ckpt_v1.read(data)
    if fast is not None:
        return fast
    tf = _tf()
    path = _reserve(scratch)
    try:
        path.write_bytes(data)
        try:
            reader = tf.train.load_checkpoint(str(path))
            return {name: np.asarray(reader.get_tensor(name))
                    for name in sorted(reader.get_variable_to_shape_map())}
        except (tf.errors.OpError, ValueError, RuntimeError) as exc:
            raise ValueError(f"not a checkpoint in the models' save format: {exc}") from None
    finally:
        path.unlink(missing_ok=True)


def write(arrays: Mapping[str, np.ndarray], scratch: Path) -> bytes:
    """The bytes of a checkpoint holding `arrays` under their names, as `save` writes it.

    A model's `restore` reads it when every variable is there with its own dtype and shape.
    """
    if not arrays:
        raise ValueError("a checkpoint needs at least one array")
    tf = _tf()
    path = _reserve(scratch)
    try:
        names = sorted(arrays)
        tf.raw_ops.Save(filename=str(path), tensor_names=names,
                        data=[tf.constant(np.asarray(arrays[n])) for n in names])
        return path.read_bytes()
    finally:
        path.unlink(missing_ok=True)
        # Save writes <path>.tempstate<n> and renames it; a failed Save may leave it behind.
        for left in path.parent.glob(f"{path.name}.tempstate*"):
            left.unlink(missing_ok=True)


def _reserve(scratch: Path) -> Path:
    if _GLOB & set(str(scratch)):
        raise ValueError(f"scratch directory {scratch} holds a glob character ({''.join(_GLOB)})")
    # A fresh name no other thread or process holds (96 random bits), not created here: Save
    # renames its temp file onto it, and on ext4 a rename over an existing file, or a write
    # into one, forces the blocks out so the unlink after costs a millisecond (measured:
    # write 1.5-1.9 ms a call with mkstemp's empty file, 0.75 ms without).
    return scratch / f"ckpt-{os.urandom(12).hex()}.tmp"
