"""One tf.lite.Interpreter with cached signature runners. Not thread-safe: callers serialize."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from app.errors import ModelExecutionError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _tf_lite() -> Any:
    # Imported lazily: `import tensorflow` costs ~2 s and ~500 MB, paid once per process.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import tensorflow as tf
    return tf.lite


def warm_up() -> None:
    """Import TensorFlow now, so the first session does not pay for it."""
    _tf_lite()


def load_interpreter(model_bytes: bytes, num_threads: int = 1) -> Any:
    """A tf.lite.Interpreter over model bytes (Flex delegate linked in by TF 2.19)."""
    lite = _tf_lite()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        return lite.Interpreter(model_content=model_bytes, num_threads=num_threads)


class LiteSession:
    """Runs a trainable model's signatures; train/save/restore change its variables."""

    def __init__(self, model_bytes: bytes, num_threads: int = 1) -> None:
        self._interpreter = load_interpreter(model_bytes, num_threads)
        self._runners: dict[str, Any] = {}
        self._reported = ""  # the interpreter's error text only grows; report what is new

    @property
    def interpreter(self) -> Any:
        """The tf.lite.Interpreter itself (to read its signatures)."""
        return self._interpreter

    def run(self, signature: str, inputs: dict[str, np.ndarray[Any, Any]]) -> dict[str, Any]:
        """Invoke a signature with checked inputs; interpreter errors become 422."""
        try:
            runner = self._runners.get(signature)
            if runner is None:
                runner = self._runners[signature] = self._interpreter.get_signature_runner(
                    signature)
            return runner(**inputs)  # type: ignore[no-any-return]
        except (RuntimeError, ValueError) as exc:
            text = str(exc)
            new = text[len(self._reported):] if text.startswith(self._reported) else text
            self._reported = text
            raise ModelExecutionError(f"signature '{signature}' failed: {new.strip()}") from None

    def save(self, path: Path) -> None:
        """Write the variables to a checkpoint file with the model's save signature."""
        self.run("save", {self._path_input("save"): np.array(str(path).encode())})
        if not path.exists():
            raise ModelExecutionError("the save signature wrote no file at the path it was given")

    def restore(self, path: Path) -> None:
        """Load the variables from a checkpoint file with the model's restore signature."""
        self.run("restore", {self._path_input("restore"): np.array(str(path).encode())})

    def _path_input(self, signature: str) -> str:
        if signature not in self._runners:
            self._runners[signature] = self._interpreter.get_signature_runner(signature)
        return next(iter(self._runners[signature].get_input_details()))
