"""JSON tensors in and out, checked against a signature before the interpreter sees them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from app.errors import InvalidInput
from app.runtime.signatures import SignatureSpec, TensorSpec, numpy_dtype

_KINDS_ACCEPTED = {
    "f": ("f", "i", "u"),  # JSON numbers without a fraction are still valid floats
    "i": ("i", "u"),
    "u": ("i", "u"),
    "b": ("b",),
}


def describe(spec: TensorSpec) -> str:
    """"[-1, 28, 28] float32", for error messages."""
    return f"{list(spec.shape)} {spec.dtype}"


def check_names(spec: SignatureSpec, names: set[str], signature: str) -> None:
    """422 unless the given input names are exactly the signature's."""
    missing = sorted(set(spec.inputs) - names)
    extra = sorted(names - set(spec.inputs))
    if missing or extra:
        want = ", ".join(f"'{n}' {describe(t)}" for n, t in spec.inputs.items())
        parts = []
        if missing:
            parts.append("missing input(s) " + ", ".join(f"'{n}'" for n in missing))
        if extra:
            parts.append("unknown input(s) " + ", ".join(f"'{n}'" for n in extra))
        raise InvalidInput(f"signature '{signature}': {'; '.join(parts)}; it takes {want}")


def check_shape(spec: TensorSpec, shape: tuple[int, ...]) -> None:
    """422 unless the spec accepts a tensor of this shape (and it is not empty)."""
    if not spec.accepts_shape(shape):
        raise InvalidInput(
            f"input '{spec.name}': expected shape {list(spec.shape)} ({spec.dtype}), "
            f"received shape {list(shape)}"
        )
    if 0 in shape and 0 not in spec.shape:
        raise InvalidInput(f"input '{spec.name}': received an empty tensor {list(shape)}")


def parse_json(raw: bytes) -> tuple[Any, bool]:
    """A JSON body parsed with orjson, and whether its text holds a `true` or `false` literal
    anywhere (a substring search, far cheaper than looking at every parsed element)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}") from None
    return body, b"true" in raw or b"false" in raw


def holds_bool(value: Any) -> bool:
    """Whether a nested list (or a scalar) holds a bool anywhere."""
    if isinstance(value, list):
        return any(holds_bool(v) for v in value)
    return isinstance(value, bool)


def decode_value(spec: TensorSpec, value: Any, *, may_hold_bools: bool = True
                 ) -> np.ndarray[Any, Any]:
    """One JSON value (nested list or scalar) to a numpy array of the spec's dtype.

    numpy reads [1, true] as the ints [1, 1]; a numeric tensor is looked at element by
    element for bools unless the caller knows the body holds no bool literal.
    """
    if spec.dtype == "string":
        return _decode_strings(spec, value)
    try:
        raw = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nesting
        raise InvalidInput(f"input '{spec.name}': not a rectangular array ({exc})") from None
    if raw.dtype.kind in "iuf" and may_hold_bools and holds_bool(value):
        raise InvalidInput(f"input '{spec.name}': expected dtype {spec.dtype}, received bool "
                           "values among numbers")
    target = numpy_dtype(spec.dtype)
    accepted = _KINDS_ACCEPTED.get(target.kind, (target.kind,))
    if raw.dtype.kind not in accepted and raw.size:
        got = {"U": "string values", "O": "mixed or null values", "b": "bool values",
               "f": "float values (or integers too large)", "i": "int values",
               "u": "int values"}.get(raw.dtype.kind, f"{raw.dtype.name} values")
        raise InvalidInput(f"input '{spec.name}': expected dtype {spec.dtype}, received {got}")
    if target.kind in "iu" and raw.size:
        info = np.iinfo(target)
        if raw.min() < info.min or raw.max() > info.max:
            raise InvalidInput(f"input '{spec.name}': values out of range for {spec.dtype}")
    elif target.kind == "f" and raw.dtype.kind == "f" and raw.size and (
            raw.dtype.itemsize > target.itemsize):
        limit = float(np.finfo(target).max)
        finite = raw[np.isfinite(raw)]  # ±inf fits; NaN would hide an overflow from max()
        if finite.size and float(np.max(np.abs(finite))) > limit:
            raise InvalidInput(f"input '{spec.name}': values beyond ±{limit:.4g} do not fit "
                               f"{spec.dtype}")
    arr = raw.astype(target, copy=False)
    check_shape(spec, arr.shape)
    return arr


def _decode_strings(spec: TensorSpec, value: Any) -> np.ndarray[Any, Any]:
    raw = np.asarray(value, dtype=object)
    flat = raw.reshape(-1)
    for item in flat:
        if not isinstance(item, str):
            raise InvalidInput(f"input '{spec.name}': expected strings")
    arr = np.array([s.encode() for s in flat], dtype=object).reshape(raw.shape)
    check_shape(spec, arr.shape)
    return arr


def decode_inputs(
    spec: SignatureSpec, body: Any, signature: str, limits: Limits | None = None, *,
    may_hold_bools: bool = True,
) -> dict[str, np.ndarray[Any, Any]]:
    """The contract's {"inputs": {...}} body to arrays, or 422 naming what is wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), dict):
        raise InvalidInput('body must be a JSON object {"inputs": {"<name>": <array>}}')
    inputs = body["inputs"]
    check_names(spec, set(inputs), signature)
    arrays = {name: decode_value(spec.inputs[name], inputs[name], may_hold_bools=may_hold_bools)
              for name in spec.inputs}
    check_batch(spec, arrays)
    check_limits(spec, arrays, limits or DEFAULT_LIMITS)
    return arrays


DEFAULT_LIMITS: Limits


@dataclass(frozen=True)
class Limits:
    """What one call may carry."""

    max_elements: int = 16 * 1024 * 1024
    max_batch: int = 4096


DEFAULT_LIMITS = Limits()


def check_limits(spec: SignatureSpec, arrays: dict[str, np.ndarray[Any, Any]],
                 limits: Limits) -> None:
    """422 when a call carries too many elements or too large a batch."""
    for name, arr in arrays.items():
        if spec.inputs[name].shape and spec.inputs[name].shape[0] == -1 and arr.ndim and (
                arr.shape[0] > limits.max_batch):
            raise InvalidInput(f"input '{name}': batch of {arr.shape[0]}; the limit is "
                               f"{limits.max_batch}")
    total = sum(a.size for a in arrays.values())
    if total > limits.max_elements:
        raise InvalidInput(f"the inputs hold {total} elements; the limit per call is "
                           f"{limits.max_elements}")


def check_batch(spec: SignatureSpec, arrays: dict[str, np.ndarray[Any, Any]]) -> None:
    """422 unless inputs whose first dimension is open agree on it (the batch size).

    TensorFlow would otherwise broadcast, e.g. one label row over a whole batch of images.
    """
    sizes = {n: a.shape[0] for n, a in arrays.items()
             if spec.inputs[n].shape and spec.inputs[n].shape[0] == -1 and a.ndim}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"'{n}' has {k}" for n, k in sizes.items())
        raise InvalidInput(f"inputs disagree on the batch size (first dimension): {listed}")


def encode_outputs(outputs: dict[str, np.ndarray[Any, Any]]) -> dict[str, Any]:
    """Arrays to JSON-ready values: 0-d arrays become scalars, bytes become str."""
    out: dict[str, Any] = {}
    for name, arr in outputs.items():
        a = np.asarray(arr)
        if a.dtype.kind in ("S", "O"):
            out[name] = np.vectorize(_text, otypes=[object])(a).tolist() if a.ndim else _text(
                a.item())
        elif a.ndim == 0:
            out[name] = a.item()
        else:
            out[name] = a  # orjson serializes ndarrays natively (OPT_SERIALIZE_NUMPY)
    return out


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


MAX_BATCHES = 4096


def batches_of(members: dict[str, Any]) -> int:
    """The `batches` member of a body or of a request's parameters (1 when absent)."""
    k = members.get("batches", 1)
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_BATCHES:
        raise InvalidInput(f"batches: must be an integer from 1 to {MAX_BATCHES}, got {k!r}")
    return k


def split_batches(arrays: dict[str, np.ndarray[Any, Any]], k: int
                  ) -> list[dict[str, np.ndarray[Any, Any]]]:
    """k consecutive equal slices of every input's first dimension (422 unless k divides it)."""
    parts = []
    for name, arr in arrays.items():
        n = arr.shape[0] if arr.ndim else 0
        if n % k:
            raise InvalidInput(f"batches: {k} does not divide the first dimension of input "
                               f"'{name}' ({n})")
    size = {name: arr.shape[0] // k for name, arr in arrays.items()}
    for i in range(k):
        parts.append({n: a[i * size[n]:(i + 1) * size[n]] for n, a in arrays.items()})
    return parts
