"""Open Inference Protocol (v2) wire codec with the binary tensor data extension; numpy only.

A request body is a JSON header, optionally followed by a binary section whose length the
``Inference-Header-Content-Length`` header splits off; each binary input says its size in
``parameters.binary_data_size`` and the sections follow in input order. Fixed-size tensors
are raw little-endian row-major bytes; BYTES elements are a 4-byte little-endian length
followed by the bytes. Errors: 400 for a body that is not a well-formed OIP request, 422
(from app.runtime.codec) for tensors that do not fit the signature.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from app.errors import FleetliteError, InvalidInput, PayloadTooLarge
from app.runtime.codec import batches_of, check_batch, check_names, check_shape, holds_bool
from app.runtime.oip_response import oip_datatype
from app.runtime.signatures import SignatureSpec, TensorSpec, numpy_dtype

_JSON_KINDS = {"f": "fiu", "i": "iu", "u": "iu", "b": "b"}  # JSON ints are valid floats
_UNSUPPORTED = ("shared_memory_region", "classification")
Array = np.ndarray[Any, Any]


class BadRequest(FleetliteError):
    """A body that is not a well-formed Open Inference Protocol request."""

    status, type_slug = 400, "bad-request"


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo a gzip or deflate Content-Encoding, refusing to inflate past limit bytes."""
    enc = (encoding or "identity").strip().lower()
    if enc == "identity":
        return body
    if enc not in ("gzip", "deflate"):
        raise BadRequest(f"unsupported Content-Encoding '{encoding}' (use gzip or deflate)")
    inflater = zlib.decompressobj(wbits=31 if enc == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid {enc} data: {exc}") from None
    if len(out) > limit:
        raise PayloadTooLarge(f"decompressed body exceeds the limit of {limit} bytes")
    if not inflater.eof:  # a prefix of a stream inflates without complaint: refuse it
        raise InvalidInput(f"the {enc} body ends before its end-of-stream marker: it is "
                           "truncated")
    return out


@dataclass(slots=True)
class InferRequest:
    """A parsed request: checked input arrays and the outputs to return, with their format."""

    id: str | None
    inputs: dict[str, Array]
    outputs: dict[str, bool] | None  # requested name -> binary; None means every output
    binary_default: bool
    batches: int = 1  # train steps in one call: the request parameter `batches`


def parse_request(body: bytes, header_length: str | None, spec: SignatureSpec,
                  model: str) -> InferRequest:
    """Split, parse and check an infer request against the signature; arrays are not copied."""
    split = _header_length(header_length, len(body))
    view = memoryview(body)
    try:
        header = orjson.loads(view[:split])
    except orjson.JSONDecodeError as exc:
        hint = " (check Inference-Header-Content-Length)" if header_length is not None else ""
        raise BadRequest(f"inference request header is not valid JSON{hint}: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise BadRequest('inference request must be a JSON object with an "inputs" list')
    params = _params(header, "request")
    raw: dict[str, dict[str, Any]] = {}
    for item in header["inputs"]:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest("each input must be an object with a string 'name'")
        if item["name"] in raw:
            raise BadRequest(f"input '{item['name']}' is given more than once")
        raw[item["name"]] = item
    check_names(spec, set(raw), model)
    binary, offset = view[split:], 0
    sizes = {name: _binary_size(name, item) for name, item in raw.items()}
    claimed = sum(n for n in sizes.values() if n is not None)
    if claimed != len(binary):
        each = ", ".join(f"'{k}' {n}" for k, n in sizes.items() if n is not None)
        raise BadRequest(f"binary section is {len(binary)} bytes but the inputs' "
                         f"binary_data_size add up to {claimed} ({each or 'none'})"
                         + ("; truncated body?" if claimed > len(binary) else ""))
    inputs: dict[str, Array] = {}
    for name, item in raw.items():
        inputs[name] = _input(spec.inputs[name], item, binary[offset:offset + (sizes[name] or 0)])
        offset += sizes[name] or 0
    req_id = header.get("id")
    check_batch(spec, inputs)
    return InferRequest(None if req_id is None else str(req_id), inputs,
                        _requested(header, spec, model), _flag(params, "binary_data_output"),
                        batches_of(params))


def _header_length(value: str | None, size: int) -> int:
    if value is None:
        return size
    try:
        n = int(value)
    except ValueError:
        raise BadRequest(f"Inference-Header-Content-Length '{value}' is not an integer") from None
    if not 0 < n <= size:
        raise BadRequest(f"Inference-Header-Content-Length {n} does not fit a {size}-byte body")
    return n


def _params(obj: dict[str, Any], where: str) -> dict[str, Any]:
    params = obj.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadRequest(f"{where} 'parameters' must be an object")
    for key in _UNSUPPORTED:
        if key in params:
            raise BadRequest(f"{where}: parameter '{key}' is not supported by this server")
    return params


def _flag(params: dict[str, Any], key: str) -> bool:
    value = params.get(key, False)
    if not isinstance(value, bool):
        raise BadRequest(f"parameter '{key}' must be true or false")
    return value


def _binary_size(name: str, item: dict[str, Any]) -> int | None:
    size = _params(item, f"input '{name}'").get("binary_data_size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise BadRequest(f"input '{name}': binary_data_size must be a non-negative integer")
    if size is not None and "data" in item:
        raise BadRequest(f"input '{name}' has both 'data' and parameters.binary_data_size")
    if size is None and "data" not in item:
        raise BadRequest(f"input '{name}' has neither 'data' nor parameters.binary_data_size")
    return size


def _input(spec: TensorSpec, item: dict[str, Any], chunk: memoryview) -> Array:
    name, want = spec.name, oip_datatype(spec.dtype)
    datatype, shape = item.get("datatype"), item.get("shape")
    if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise BadRequest(f"input '{name}': 'shape' must be a list of non-negative integers")
    if datatype != want:
        raise InvalidInput(f"input '{name}': expected datatype {want} ({spec.dtype}) and shape "
                           f"{list(spec.shape)}, received datatype {datatype}")
    check_shape(spec, tuple(shape))
    if "data" in item:
        return _from_json(spec, item["data"], shape)
    return _from_binary(spec, chunk, shape)


def _from_binary(spec: TensorSpec, chunk: memoryview, shape: list[int]) -> Array:
    count = math.prod(shape)
    if spec.dtype == "string":
        items = _unpack_bytes(spec.name, chunk)
        if len(items) != count:
            raise BadRequest(f"input '{spec.name}': shape {shape} needs {count} BYTES "
                             f"elements, the binary data holds {len(items)}")
        arr = np.empty(count, dtype=object)
        arr[:] = items
        return arr.reshape(shape)
    dtype = numpy_dtype(spec.dtype)
    if len(chunk) != count * dtype.itemsize:
        raise BadRequest(f"input '{spec.name}': shape {shape} {oip_datatype(spec.dtype)} needs "
                         f"{count * dtype.itemsize} bytes, binary_data_size is {len(chunk)}")
    arr = np.frombuffer(chunk, dtype=dtype.newbyteorder("<"))
    return arr.astype(dtype, copy=False).reshape(shape)


def _unpack_bytes(name: str, chunk: memoryview) -> list[bytes]:
    items, pos, end = [], 0, len(chunk)
    while pos < end:
        if pos + 4 > end:
            raise BadRequest(f"input '{name}': BYTES element length prefix cut off at {pos}")
        (n,) = struct.unpack_from("<I", chunk, pos)
        if pos + 4 + n > end:
            raise BadRequest(f"input '{name}': BYTES element at {pos} runs past the data")
        items.append(bytes(chunk[pos + 4:pos + 4 + n]))
        pos += 4 + n
    return items


def _from_json(spec: TensorSpec, data: Any, shape: list[int]) -> Array:
    if spec.dtype == "string":
        flat = np.asarray(data, dtype=object).reshape(-1)
        if not all(isinstance(s, str) for s in flat):
            raise InvalidInput(f"input '{spec.name}': expected BYTES data as strings")
        raw = np.array([s.encode() for s in flat], dtype=object)
    else:
        try:
            raw = np.asarray(data).reshape(-1)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"input '{spec.name}': data is not a rectangular array "
                               f"({exc})") from None
        target = numpy_dtype(spec.dtype)
        if raw.dtype.kind in "iuf" and holds_bool(data):  # numpy reads [1, true] as [1, 1]
            raise InvalidInput(f"input '{spec.name}': datatype {oip_datatype(spec.dtype)} "
                               "expects numbers, received bool values among them")
        if raw.size and raw.dtype.kind not in _JSON_KINDS.get(target.kind, target.kind):
            raise InvalidInput(f"input '{spec.name}': datatype {oip_datatype(spec.dtype)} "
                               f"expects numbers of that kind, received {raw.dtype.name} data")
        if target.kind in "iu" and raw.size:
            info = np.iinfo(target)
            if raw.min() < info.min or raw.max() > info.max:
                raise InvalidInput(f"input '{spec.name}': values out of range for "
                                   f"{oip_datatype(spec.dtype)}")
        elif target.kind == "f" and raw.dtype.kind == "f" and raw.size:
            finite, limit = raw[np.isfinite(raw)], float(np.finfo(target).max)
            if finite.size and float(np.max(np.abs(finite))) > limit:  # as the JSON API says
                raise InvalidInput(f"input '{spec.name}': values beyond ±{limit:.4g} do not "
                                   f"fit {oip_datatype(spec.dtype)}")
        raw = raw.astype(target, copy=False)
    if raw.size != math.prod(shape):
        raise InvalidInput(f"input '{spec.name}': shape {shape} needs {math.prod(shape)} "
                           f"elements, 'data' holds {raw.size}")
    return raw.reshape(shape)


def _requested(header: dict[str, Any], spec: SignatureSpec, model: str) -> dict[str, bool] | None:
    outputs = header.get("outputs")
    if outputs is None:
        return None
    if not isinstance(outputs, list):
        raise BadRequest("'outputs' must be a list of {\"name\": ...} objects")
    default = _flag(_params(header, "request"), "binary_data_output")
    wanted: dict[str, bool] = {}
    for item in outputs:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadRequest("each requested output must be an object with a string 'name'")
        if item["name"] not in spec.outputs:
            raise InvalidInput(f"model '{model}' has no output '{item['name']}' (it has "
                               f"{', '.join(spec.outputs)})")
        params = _params(item, f"output '{item['name']}'")
        wanted[item["name"]] = _flag(params, "binary_data") if "binary_data" in params else default
    return wanted
