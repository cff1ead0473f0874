"""Keras files are loaded and converted in a child process with a time and a memory limit,
so an untrusted file can neither take the server down nor keep it busy.

Parent: `convert_keras(data, options)`. Child:
``python -m app.runtime.keras_child DIR MEMORY_BYTES``
reads DIR/options.json and DIR/model.keras (or .h5), writes DIR/model.tflite and one JSON
result {"ok": true, "trainable_layers": [...], "variables": [...]} or
{"ok": false, "reason": "..."} to DIR/result.json.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.runtime.keras_options import ConvertOptions, parse_options

KERAS_MAGIC = b"PK\x03\x04"  # a .keras file is a zip archive
H5_MAGIC = b"\x89HDF\r\n\x1a\n"
TIMEOUT_SECONDS = 600.0
MEMORY_BYTES = 6 << 30  # address space; TensorFlow alone reserves about 2 GiB of it


# How running out of address space shows when a shared library or a buffer cannot be mapped.
_OUT_OF_MEMORY = ("failed to map segment", "Cannot allocate memory", "bad_alloc")


class KerasRefused(Exception):
    """The file or the options cannot be converted; the message says why (a 422)."""


@dataclass(frozen=True)
class KerasResult:
    """A converted model: its .tflite bytes, the layers that train, the saved variables."""

    tflite: bytes
    format: str
    trainable_layers: list[str]
    variables: list[str]


def keras_format(data: bytes) -> str:
    """"keras" or "h5" from the file's first bytes, or KerasRefused."""
    if data.startswith(KERAS_MAGIC):
        return "keras"
    if data.startswith(H5_MAGIC):
        return "h5"
    raise KerasRefused("file: not a Keras model (neither a Keras 3 .keras archive nor a "
                       "legacy HDF5 .h5 file)")


def convert_keras(data: bytes, options: ConvertOptions, *, work_dir: Path | None = None,
                  timeout: float = TIMEOUT_SECONDS,
                  memory_bytes: int = MEMORY_BYTES) -> KerasResult:
    """Convert a Keras file in a fresh child process; KerasRefused with the reason."""
    fmt = keras_format(data)
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="fleetlite-convert-", dir=work_dir))
    try:
        (tmp / f"model.{fmt}").write_bytes(data)
        (tmp / "options.json").write_text(options.model_dump_json())
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow",
               "CUDA_VISIBLE_DEVICES": ""}
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.runtime.keras_child", str(tmp), str(memory_bytes)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=env, start_new_session=True)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise KerasRefused(f"the conversion did not finish within {timeout:g} s") from None
        try:
            result = json.loads((tmp / "result.json").read_text())
        except (OSError, ValueError):
            raise KerasRefused(f"the conversion ended without a result (exit {code}), "
                               f"perhaps at its memory limit of {memory_bytes >> 20} MiB"
                               ) from None
        if not result.get("ok"):
            raise KerasRefused(str(result.get("reason", "refused")))
        return KerasResult((tmp / "model.tflite").read_bytes(), fmt,
                           list(result["trainable_layers"]), list(result["variables"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(directory: Path) -> dict[str, Any]:
    from app.runtime.keras_convert import ConvertError, convert, load_keras

    options = parse_options(json.loads((directory / "options.json").read_text()))
    path = next(p for p in directory.iterdir() if p.stem == "model")
    try:
        converted = convert(load_keras(path), options)
    except ConvertError as exc:
        return {"ok": False, "reason": str(exc)}
    (directory / "model.tflite").write_bytes(converted.tflite)
    return {"ok": True, "trainable_layers": converted.trainable_layers,
            "variables": converted.variables}


def main() -> None:
    """Convert the model in argv[1]'s directory and write result.json there."""
    directory, memory_bytes = Path(sys.argv[1]), int(sys.argv[2])
    # Set here, before anything is imported, rather than in a preexec_fn, which is unsafe
    # in a parent that runs threads.
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    try:
        result = _run(directory)
    except Exception as exc:  # noqa: BLE001 - any failure is a refusal with its reason
        text = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, MemoryError) or any(s in text for s in _OUT_OF_MEMORY):
            text = f"the conversion ran out of its memory limit of {memory_bytes >> 20} MiB"
        result = {"ok": False, "reason": text[:500]}
    (directory / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
