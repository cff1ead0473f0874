"""Open Inference Protocol (v2) responses and metadata: the server's facts, model metadata
for a signature, and infer responses with JSON or binary outputs; numpy only."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson

from app.runtime.signatures import SignatureSpec, TensorSpec, dtype_name

VERSION = "1"  # a session's signatures are its protocol models, each in one version
PLATFORM = "tflite"
EXTENSIONS = ["binary_tensor_data"]
HEADER_LENGTH = "Inference-Header-Content-Length"
OIP_DATATYPES = {
    "bool": "BOOL", "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
    "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
    "float16": "FP16", "float32": "FP32", "float64": "FP64", "string": "BYTES",
}
Array = np.ndarray[Any, Any]


def oip_datatype(dtype: str) -> str:
    """The protocol's datatype ("FP32") for a contract dtype name ("float32")."""
    return OIP_DATATYPES.get(dtype, dtype.upper())


def tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    """One input or output as model metadata: name, datatype, shape (-1 for open dims)."""
    return {"name": spec.name, "datatype": oip_datatype(spec.dtype), "shape": list(spec.shape)}


def model_metadata(name: str, spec: SignatureSpec, version: str, platform: str) -> dict[str, Any]:
    """The protocol's model metadata for one signature."""
    return {"name": name, "versions": [version], "platform": platform,
            "inputs": [tensor_metadata(t) for t in spec.inputs.values()],
            "outputs": [tensor_metadata(t) for t in spec.outputs.values()]}


def build_response(model: str, version: str, request_id: str | None,
                   wanted: dict[str, bool] | None, binary_default: bool, outputs: dict[str, Any],
                   parameters: dict[str, Any] | None = None) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary outputs follow it;
    `wanted` maps requested output names to binary (None: every output, binary_default)."""
    wanted = wanted or {name: binary_default for name in outputs}
    described, chunks = [], []
    for name, binary in wanted.items():
        arr = np.asarray(outputs[name])
        out: dict[str, Any] = {"name": name, "datatype": oip_datatype(dtype_name(arr.dtype)),
                               "shape": list(arr.shape)}
        text = arr.dtype.kind in "SOU"
        if binary:
            data = _pack_bytes(arr) if text else np.ascontiguousarray(arr).tobytes()
            out["parameters"] = {"binary_data_size": len(data)}
            chunks.append(data)
        else:
            out["data"] = [_text(v) for v in arr.reshape(-1)] if text else arr.reshape(-1)
        described.append(out)
    head: dict[str, Any] = {"model_name": model, "model_version": version}
    if request_id is not None:
        head["id"] = request_id
    if parameters:
        head["parameters"] = parameters
    head["outputs"] = described
    header = orjson.dumps(head, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, None
    return b"".join([header, *chunks]), len(header)


def _pack_bytes(arr: Array) -> bytes:
    parts = []
    for v in arr.reshape(-1):
        b = v if isinstance(v, bytes) else str(v).encode()
        parts += [struct.pack("<I", len(b)), b]
    return b"".join(parts)


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
