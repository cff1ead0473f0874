"""Signature specs: tensor names, shapes (-1 for open dimensions) and dtypes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

REQUIRED_SIGNATURES = ("train", "infer", "save", "restore")
CHECKPOINT_SIGNATURES = ("save", "restore")

_DTYPE_NAMES = {
    np.dtype(np.float32): "float32", np.dtype(np.float64): "float64",
    np.dtype(np.float16): "float16", np.dtype(np.int8): "int8", np.dtype(np.int16): "int16",
    np.dtype(np.int32): "int32", np.dtype(np.int64): "int64", np.dtype(np.uint8): "uint8",
    np.dtype(np.uint16): "uint16", np.dtype(np.uint32): "uint32", np.dtype(np.uint64): "uint64",
    np.dtype(np.bool_): "bool",
}


def dtype_name(dtype: Any) -> str:
    """The contract's dtype name for a numpy dtype or scalar type ("string" for bytes)."""
    known = _DTYPE_NAMES.get(dtype)  # the common case: a numpy dtype seen before
    if known is not None:
        return known
    dt = np.dtype(dtype)
    if dt.kind in ("S", "O", "U"):
        return "string"
    return _DTYPE_NAMES.get(dt, dt.name)


def numpy_dtype(name: str) -> np.dtype[Any]:
    """The numpy dtype for a contract dtype name."""
    return np.dtype(object) if name == "string" else np.dtype(name)


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output of a signature."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    def as_json(self) -> dict[str, Any]:
        """The contract's {"shape", "dtype"} form."""
        return {"shape": list(self.shape), "dtype": self.dtype}

    def accepts_shape(self, shape: tuple[int, ...]) -> bool:
        """Whether a concrete shape fits this spec (-1 matches any size)."""
        return len(shape) == len(self.shape) and all(
            want in (-1, got) for want, got in zip(self.shape, shape, strict=True)
        )


@dataclass(frozen=True, slots=True)
class SignatureSpec:
    """Inputs and outputs of one signature, by name."""

    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]

    def as_json(self) -> dict[str, Any]:
        """The contract's {"inputs": {...}, "outputs": {...}} form."""
        return {
            "inputs": {n: t.as_json() for n, t in self.inputs.items()},
            "outputs": {n: t.as_json() for n, t in self.outputs.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SignatureSpec:
        """Inverse of as_json."""
        def side(d: dict[str, Any]) -> dict[str, TensorSpec]:
            return {n: TensorSpec(n, tuple(v["shape"]), v["dtype"]) for n, v in d.items()}

        return cls(side(data["inputs"]), side(data["outputs"]))


Signatures = dict[str, SignatureSpec]


def signatures_from_json(data: dict[str, Any]) -> Signatures:
    """Parse the stored signatures column."""
    return {k: SignatureSpec.from_json(v) for k, v in data.items()}


def signatures_as_json(sigs: Signatures) -> dict[str, Any]:
    """Serialize for storage and the API."""
    return {k: v.as_json() for k, v in sorted(sigs.items())}


def read_signatures(interpreter: Any) -> Signatures:
    """Read every signature's specs from a tf.lite.Interpreter."""
    out: Signatures = {}
    for key in interpreter.get_signature_list():
        runner = interpreter.get_signature_runner(key)

        def specs(details: dict[str, Any]) -> dict[str, TensorSpec]:
            return {
                name: TensorSpec(
                    name,
                    tuple(int(d) for d in det.get("shape_signature", det["shape"])),
                    dtype_name(det["dtype"]),
                )
                for name, det in sorted(details.items())
            }

        out[key] = SignatureSpec(specs(runner.get_input_details()),
                                 specs(runner.get_output_details()))
    return out
