"""Trainable TFLite models with train/infer/save/restore signatures.

Importing this package does not import TensorFlow; `build` does, and `build_cached` only
on a cache miss.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Kept here rather than in each model module so that listing models needs no TensorFlow.
_DESCRIPTIONS = {
    "mlp": "the blog's 28x28 digit MLP: x [-1,28,28] float32, y [-1,10] one-hot; SGD lr 0.1",
    "head": "softmax head on 64 precomputed features: bottleneck [-1,64] float32, "
    "label [-1] int32 (4 classes); SGD lr 0.1",
    "cnn": "benchmark CNN on 64x64 RGB: image [-1,64,64,3] float32, label [-1,10] one-hot; "
    "SGD lr 0.01",
}
NAMES: tuple[str, ...] = tuple(_DESCRIPTIONS)
SIGNATURES: tuple[str, ...] = ("train", "infer", "save", "restore")

_PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_CACHE_DIR = _PACKAGE_DIR.parent / ".cache" / "models"


def _check(name: str, omit: Sequence[str], fixed_batch: int | None) -> None:
    if isinstance(omit, str):
        raise TypeError(f"omit must be a sequence of signature names, not the string {omit!r}")
    if name not in NAMES:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(NAMES)}")
    unknown = sorted(set(omit) - set(SIGNATURES))
    if unknown:
        raise ValueError(f"cannot omit {unknown}; signatures are: {', '.join(SIGNATURES)}")
    if set(SIGNATURES) <= set(omit):
        raise ValueError("cannot omit every signature")
    if fixed_batch is not None and (isinstance(fixed_batch, bool) or fixed_batch < 1):
        raise ValueError(f"fixed_batch must be a positive integer, got {fixed_batch!r}")


def description(name: str) -> str:
    """One-line description of model `name`."""
    _check(name, (), None)
    return _DESCRIPTIONS[name]


def build(
    name: str, *, omit: Sequence[str] = (), fixed_batch: int | None = None, seed: int = 0
) -> bytes:
    """Build model `name` and return its .tflite bytes."""
    _check(name, omit, fixed_batch)
    from ._convert import to_tflite

    model = importlib.import_module(f"{__name__}.{name}").Model(seed)
    return to_tflite(model, model.concrete_functions(omit=omit, fixed_batch=fixed_batch))


def _source_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE_DIR.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def cache_key(
    name: str, *, omit: Sequence[str] = (), fixed_batch: int | None = None, seed: int = 0
) -> str:
    """Hash identifying the bytes `build` would return for these arguments."""
    _check(name, omit, fixed_batch)
    # Signature order in the file does not depend on the order of `omit`.
    params = {"name": name, "omit": sorted(set(omit)), "fixed_batch": fixed_batch, "seed": seed}
    payload = json.dumps(
        {
            "params": params,
            "source": _source_digest(),
            # Metadata avoids importing TensorFlow (seconds) on a cache hit.
            "tensorflow": importlib.metadata.version("tensorflow"),
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def build_cached(
    name: str,
    *,
    cache_dir: str | Path | None = None,
    omit: Sequence[str] = (),
    fixed_batch: int | None = None,
    seed: int = 0,
) -> bytes:
    """Like `build`, but reuse a copy cached on disk (default `<repo>/.cache/models`)."""
    key = cache_key(name, omit=omit, fixed_batch=fixed_batch, seed=seed)
    directory = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    path = directory / f"{name}-{key}.tflite"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    data = build(name, omit=omit, fixed_batch=fixed_batch, seed=seed)
    directory.mkdir(parents=True, exist_ok=True)
    # Concurrent builders (e.g. pytest-xdist workers) each write a private temp file, and
    # os.replace makes whichever finishes last win without anyone reading a partial file.
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return data


__all__ = ["NAMES", "SIGNATURES", "build", "build_cached", "cache_key", "description"]
