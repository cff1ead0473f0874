"""Properties of both tensor codecs: JSON (app/runtime/codec) and OIP v2 (app/runtime/oip_codec).

Random shapes (rank 0-4), dtypes and values, NaN and ±inf included. Requests that fit the
signature decode to exactly the arrays sent; everything else raises the codec's own errors
(InvalidInput 422, BadRequest 400, PayloadTooLarge 413), never another exception. OIP
requests are built by tritonclient itself, binary or JSON per input.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import zlib
from typing import Any

import numpy as np
import orjson
import pytest
import tritonclient.http as httpclient
import tritonclient.http._client as triton_internals
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tritonclient.utils import np_to_triton_dtype

from app.errors import InvalidInput, PayloadTooLarge
from app.runtime import oip_response
from app.runtime.codec import decode_inputs
from app.runtime.oip_codec import BadRequest, decompress, parse_request
from app.runtime.signatures import SignatureSpec, TensorSpec, dtype_name

PROPERTY = settings(max_examples=200, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DTYPES = [np.dtype(t) for t in ("float32", "float64", "int32", "int64", "uint8", "bool")]
DOMAIN = (InvalidInput, BadRequest)
LIMIT = 1 << 20

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # casts of NaN and inf


# Strategies


def elements(dtype: np.dtype[Any]) -> st.SearchStrategy[Any]:
    """Any value of the dtype: floats include NaN, ±inf, -0.0 and subnormals."""
    if dtype.kind == "f":
        info = np.finfo(dtype)
        special = [math.nan, math.inf, -math.inf, -0.0, float(info.max), float(info.min),
                   float(info.smallest_subnormal)]
        return st.sampled_from(special) | st.floats(width=dtype.itemsize * 8)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return st.sampled_from([int(info.min), int(info.max), 0]) | hnp.from_dtype(dtype)
    return hnp.from_dtype(dtype)


@st.composite
def arrays(draw: st.DrawFn, dtype: np.dtype[Any] | None = None,
           shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A non-empty array of rank 0-4."""
    dtype = dtype if dtype is not None else draw(st.sampled_from(DTYPES))
    if shape is None:
        shape = tuple(draw(st.lists(st.integers(1, 4), max_size=4)))
    return draw(hnp.arrays(dtype, shape, elements=elements(dtype)))


@st.composite
def spec_for(draw: st.DrawFn, name: str, arr: np.ndarray) -> TensorSpec:
    """A spec the array fits, with some dimensions opened to -1."""
    dims = tuple(-1 if draw(st.booleans()) else d for d in arr.shape)
    return TensorSpec(name, dims, dtype_name(arr.dtype))


@st.composite
def batch(draw: st.DrawFn) -> tuple[SignatureSpec, dict[str, np.ndarray]]:
    """1-3 inputs of any dtypes whose open first dimensions agree, and their signature."""
    n = draw(st.integers(1, 3))
    first = draw(st.integers(1, 4))
    arrs: dict[str, np.ndarray] = {}
    specs: dict[str, TensorSpec] = {}
    for i in range(n):
        rank = draw(st.integers(0, 4))
        shape = () if rank == 0 else (first, *draw(st.lists(st.integers(1, 4), min_size=rank - 1,
                                                            max_size=rank - 1)))
        name = f"in{i}"
        arrs[name] = draw(arrays(shape=shape))
        specs[name] = draw(spec_for(name, arrs[name]))
    return SignatureSpec(specs, {"out": TensorSpec("out", (-1,), "float32")}), arrs


def same(got: np.ndarray, want: np.ndarray) -> None:
    """Same dtype, shape and values, NaN equal to NaN."""
    assert got.dtype == want.dtype and got.shape == want.shape, (got, want)
    assert np.array_equal(got, want, equal_nan=want.dtype.kind == "f"), (got, want)


def finite(arr: np.ndarray) -> bool:
    return arr.dtype.kind != "f" or bool(np.isfinite(arr).all())


# JSON codec


def json_decode(spec: SignatureSpec, inputs: dict[str, Any]) -> dict[str, np.ndarray]:
    return decode_inputs(spec, {"inputs": inputs}, "sig")


@PROPERTY
@given(case=batch())
def test_json_valid_requests_round_trip_exactly(case: tuple[SignatureSpec, dict]) -> None:
    spec, arrs = case
    got = json_decode(spec, {n: a.tolist() for n, a in arrs.items()})  # as parsed
    assert list(got) == list(spec.inputs)
    for name, arr in arrs.items():
        same(got[name], arr)


@PROPERTY
@given(case=batch())
def test_json_over_the_wire_round_trips_or_refuses_non_finite_values(
        case: tuple[SignatureSpec, dict]) -> None:
    """orjson writes NaN and inf as null: those bodies are refused, the rest arrive exactly."""
    spec, arrs = case
    body = orjson.loads(orjson.dumps({n: a.tolist() for n, a in arrs.items()}))
    if all(finite(a) for a in arrs.values()):
        got = json_decode(spec, body)
        for name, arr in arrs.items():
            same(got[name], arr)
    else:
        with pytest.raises(InvalidInput):
            json_decode(spec, body)


@PROPERTY
@given(data=st.data(), arr=arrays(), spec_dtype=st.sampled_from(DTYPES))
def test_json_other_dtypes_decode_as_the_contract_says_or_raise_invalid_input(
        data: st.DataObject, arr: np.ndarray, spec_dtype: np.dtype[Any]) -> None:
    sent, want = arr.dtype, spec_dtype
    spec = data.draw(spec_for("t", arr))
    spec = TensorSpec("t", spec.shape, dtype_name(want))
    try:
        got = json_decode(SignatureSpec({"t": spec}, {}), {"t": arr.tolist()})["t"]
    except InvalidInput:
        # Refused only where the contract says so: bools and numbers do not mix, floats do
        # not become ints, ints must fit, and floats must fit the narrower float.
        fits = (sent.kind in "iu" and want.kind in "iu" and arr.min() >= np.iinfo(want).min
                and arr.max() <= np.iinfo(want).max)
        values = arr[np.isfinite(arr)] if sent.kind == "f" else arr
        widening = sent.kind == "f" and want.kind == "f" and (
            want.itemsize >= sent.itemsize or not values.size
            or np.abs(values).max() <= np.finfo(want).max)
        assert not (sent == want or fits or (sent.kind in "iu" and want.kind == "f")
                    or widening), (sent, want, arr)
        return
    assert got.dtype == want and got.shape == arr.shape
    assert (sent.kind == "b") == (want.kind == "b")
    assert not (sent.kind == "f" and want.kind != "f")
    same(got, np.asarray(arr.tolist()).astype(want))


@PROPERTY
@given(data=st.data(), arr=arrays(), dims=st.lists(st.integers(-1, 5), max_size=5))
def test_json_shapes_the_spec_refuses_raise_invalid_input(
        data: st.DataObject, arr: np.ndarray, dims: list[int]) -> None:
    spec = TensorSpec("t", tuple(dims), dtype_name(arr.dtype))
    assume(not spec.accepts_shape(arr.shape))
    with pytest.raises(InvalidInput):
        json_decode(SignatureSpec({"t": spec}, {}), {"t": arr.tolist()})


@PROPERTY
@given(shape=st.lists(st.integers(0, 3), min_size=1, max_size=4).filter(lambda s: 0 in s),
       dtype=st.sampled_from(DTYPES))
def test_json_empty_tensors_raise_invalid_input(shape: list[int], dtype: np.dtype[Any]) -> None:
    spec = TensorSpec("t", tuple(-1 for _ in shape), dtype_name(dtype))
    with pytest.raises(InvalidInput):
        json_decode(SignatureSpec({"t": spec}, {}), {"t": np.zeros(shape, dtype).tolist()})


# OIP codec


def oip_body(arrs: dict[str, np.ndarray], binary: dict[str, bool]) -> tuple[bytes, str | None]:
    """The body and Inference-Header-Content-Length tritonclient would send."""
    inputs = []
    for name, arr in arrs.items():
        t = httpclient.InferInput(name, list(arr.shape), np_to_triton_dtype(arr.dtype))
        inputs.append(t.set_data_from_numpy(arr, binary_data=binary[name]))
    body, json_size = triton_internals._get_inference_request(
        inputs=inputs, request_id="r", outputs=None, sequence_id=0, sequence_start=False,
        sequence_end=False, priority=0, timeout=None, custom_parameters=None)
    return body, None if json_size is None else str(json_size)


@st.composite
def oip_case(draw: st.DrawFn, binary_only: bool = False
             ) -> tuple[SignatureSpec, dict[str, np.ndarray], bytes, str | None]:
    """A signature, arrays that fit it, and tritonclient's body and header length for them;
    each input binary or JSON at random (binary_only: all binary, so a header length)."""
    spec, arrs = draw(batch())
    binary = {n: binary_only or draw(st.booleans()) for n in arrs}
    body, header_length = oip_body(arrs, binary)
    return spec, arrs, body, header_length


@PROPERTY
@given(case=oip_case())
def test_oip_valid_requests_round_trip_exactly(case: tuple) -> None:  # type: ignore[type-arg]
    spec, arrs, body, header_length = case
    try:
        got = parse_request(body, header_length, spec, "sig")
    except BadRequest as exc:
        # Only NaN/inf in JSON "data" (tritonclient writes them as NaN/Infinity literals).
        assert "not valid JSON" in exc.detail
        assert not all(finite(a) for n, a in arrs.items()), exc.detail
        return
    assert got.id == "r" and got.binary_default is True and got.outputs is None
    assert list(got.inputs) == list(arrs)
    for name, arr in arrs.items():
        same(got.inputs[name], arr)


@PROPERTY
@given(case=oip_case(binary_only=True),
       cut=st.one_of(st.integers(1, 64), st.integers(1, 1 << 16)),
       extra=st.binary(min_size=1, max_size=64), extend=st.booleans())
def test_oip_truncated_or_extended_bodies_raise_bad_request(
        case: tuple, cut: int, extra: bytes, extend: bool) -> None:  # type: ignore[type-arg]
    spec, _, body, header_length = case
    changed = body + extra if extend else body[:max(0, len(body) - cut)]
    with pytest.raises(BadRequest):
        parse_request(changed, header_length, spec, "sig")


@PROPERTY
@given(case=oip_case(binary_only=True), data=st.data())
def test_oip_random_header_lengths_raise_domain_errors(
        case: tuple, data: st.DataObject) -> None:  # type: ignore[type-arg]
    spec, arrs, body, header_length = case
    real = int(header_length)
    value = data.draw(st.one_of(st.integers(-8, 8).map(lambda d: str(real + d)),
                                st.integers(-(2**64), 2**64).map(str), st.text(max_size=8)))
    try:
        split: int | None = int(value)  # as the server reads it
    except ValueError:
        split = None
    if split == real:
        got = parse_request(body, value, spec, "sig")
        for name, arr in arrs.items():
            same(got.inputs[name], arr)
        return
    with pytest.raises(DOMAIN):
        parse_request(body, value, spec, "sig")


@PROPERTY
@given(data=st.data(), arr=arrays(), datatype=st.sampled_from(
    sorted(set(oip_response.OIP_DATATYPES.values()) | {"fp32", "FLOAT", ""})))
def test_oip_other_datatypes_raise_invalid_input(data: st.DataObject, arr: np.ndarray,
                                                 datatype: str) -> None:
    want = np_to_triton_dtype(arr.dtype)
    assume(datatype != want)
    body, header_length = oip_body({"t": arr}, {"t": data.draw(st.booleans())})
    header = body if header_length is None else body[:int(header_length)]
    binary = b"" if header_length is None else body[int(header_length):]
    patched = header.replace(f'"datatype":"{want}"'.encode(), f'"datatype":"{datatype}"'.encode())
    spec = SignatureSpec({"t": data.draw(spec_for("t", arr))}, {})
    with pytest.raises(DOMAIN) as info:
        parse_request(patched + binary, None if header_length is None else str(len(patched)),
                      spec, "sig")
    if finite(arr):
        assert isinstance(info.value, InvalidInput) and want in info.value.detail


@PROPERTY
@given(data=st.data(), arr=arrays(), dims=st.lists(st.integers(-1, 5), max_size=5),
       binary=st.booleans())
def test_oip_shapes_the_spec_refuses_raise_invalid_input(
        data: st.DataObject, arr: np.ndarray, dims: list[int], binary: bool) -> None:
    spec = TensorSpec("t", tuple(dims), dtype_name(arr.dtype))
    assume(not spec.accepts_shape(arr.shape))
    body, header_length = oip_body({"t": arr}, {"t": binary})
    with pytest.raises(DOMAIN) as info:
        parse_request(body, header_length, SignatureSpec({"t": spec}, {}), "sig")
    if binary or finite(arr):
        assert isinstance(info.value, InvalidInput), info.value.detail


@PROPERTY
@given(values=st.lists(st.floats(min_value=3.5e38, allow_infinity=False)
                       | st.floats(max_value=-3.5e38, allow_infinity=False)
                       | st.floats(-1e4, 1e4) | st.sampled_from([math.nan, math.inf]),
                       min_size=1, max_size=6),
       width=st.sampled_from(["float32", "float16"]))
def test_floats_the_dtype_cannot_hold_raise_invalid_input_in_both_codecs(
        values: list[float], width: str) -> None:
    """A finite value past the dtype's range would become inf: both dialects refuse it."""
    overflows = any(math.isfinite(v) and abs(v) > float(np.finfo(width).max) for v in values)
    spec = SignatureSpec({"t": TensorSpec("t", (-1,), width)}, {})
    header = orjson.dumps({"inputs": [{"name": "t", "datatype": oip_response.oip_datatype(width),
                                       "shape": [len(values)], "data": values}]})
    decoders = [lambda: json_decode(spec, {"t": values})["t"]]
    if all(math.isfinite(v) for v in values):  # JSON itself has no NaN or inf
        decoders.append(lambda: parse_request(header, None, spec, "sig").inputs["t"])
    for decode in decoders:
        if overflows:
            with pytest.raises(InvalidInput, match="do not fit"):
                decode()
        else:
            same(decode(), np.asarray(values).astype(width))


# Any header at all

NAMES = st.sampled_from(["in0", "in1", "x", ""]) | st.text(max_size=3)
HUGE = st.integers(-(2**63), 2**64 - 1)  # what orjson can write
DIMS = st.lists(st.integers(0, 5) | HUGE | st.sampled_from([True, -1, 2**62, 2**63 - 1]),
                max_size=6) | st.lists(st.just(1), min_size=60, max_size=70)
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | HUGE | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner,
                                                                 max_size=3),
    max_leaves=12)


SPECS = [
    SignatureSpec({"in0": TensorSpec("in0", (-1, 3), "float32"),
                   "in1": TensorSpec("in1", (-1,), "int32")},
                  {"out": TensorSpec("out", (-1,), "float32")}),
    SignatureSpec({"x": TensorSpec("x", (), "float64")}, {"y": TensorSpec("y", (), "bool")}),
    SignatureSpec({"in0": TensorSpec("in0", (-1,), "string")}, {}),
    SignatureSpec({"in0": TensorSpec("in0", (2, -1), "uint8"),
                   "in1": TensorSpec("in1", (-1, 2), "bool")}, {}),
]
MUTABLE = {
    "name": NAMES | JSON_VALUE,
    "datatype": st.sampled_from(sorted(oip_response.OIP_DATATYPES.values())) | JSON_VALUE,
    "shape": DIMS | JSON_VALUE,
    "parameters": st.fixed_dictionaries({}, optional={
        "binary_data_size": st.integers(-1, 64) | HUGE | JSON_VALUE,
        "shared_memory_region": JSON_VALUE}) | JSON_VALUE,
    "data": JSON_VALUE | st.lists(st.floats(width=32) | st.text(max_size=3), max_size=8),
}
TOP = {
    "inputs": st.lists(st.dictionaries(st.sampled_from(sorted(MUTABLE)), JSON_VALUE),
                       max_size=2) | JSON_VALUE,
    "outputs": st.lists(st.fixed_dictionaries({"name": NAMES}, optional={
        "parameters": st.fixed_dictionaries({}, optional={"binary_data": JSON_VALUE})
        | JSON_VALUE}), max_size=2) | JSON_VALUE,
    "parameters": st.fixed_dictionaries({}, optional={"binary_data_output": JSON_VALUE,
                                                      "classification": JSON_VALUE})
    | JSON_VALUE,
    "id": JSON_VALUE,
}


@st.composite
def mutated_request(draw: st.DrawFn) -> tuple[SignatureSpec, dict[str, Any], bytes]:
    """A valid request for one of SPECS (header and binary section), then 0-3 of its fields
    replaced by anything at all: so the odd values get past the checks that come first."""
    spec = draw(st.sampled_from(SPECS))
    items, chunks = [], []
    for name, t in spec.inputs.items():
        shape = [draw(st.integers(1, 3)) if d == -1 else d for d in t.shape]
        item: dict[str, Any] = {"name": name, "datatype": oip_response.oip_datatype(t.dtype),
                                "shape": shape}
        if t.dtype == "string":
            words = draw(st.lists(st.binary(max_size=4), min_size=math.prod(shape),
                                  max_size=math.prod(shape)))
            chunk = b"".join(len(w).to_bytes(4, "little") + w for w in words)
        else:
            chunk = draw(arrays(np.dtype(t.dtype), tuple(shape))).tobytes()
        if draw(st.booleans()):
            item["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        elif t.dtype == "string":
            item["data"] = [w.decode("latin-1") for w in words]
        else:
            item["data"] = np.frombuffer(chunk, t.dtype).tolist()
        items.append(item)
    header: dict[str, Any] = {"inputs": items}
    for _ in range(draw(st.integers(0, 3))):
        if items and draw(st.integers(0, 3)):
            item = draw(st.sampled_from(items))
            key = draw(st.sampled_from(sorted(MUTABLE)))
            if draw(st.integers(0, 4)):
                item[key] = draw(MUTABLE[key])
            else:
                item.pop(key, None)
        else:
            key = draw(st.sampled_from(sorted(TOP)))
            header[key] = draw(TOP[key])
    binary = b"".join(chunks)
    if draw(st.integers(0, 4)) == 0:
        binary = draw(st.binary(max_size=64))
    return spec, header, binary


@PROPERTY
@given(request=mutated_request(), give_length=st.booleans())
def test_oip_any_header_parses_or_raises_domain_errors(request: tuple,  # type: ignore[type-arg]
                                                      give_length: bool) -> None:
    spec, header, binary = request
    head = orjson.dumps(header)
    body, length = (head + binary, str(len(head))) if give_length or binary else (head, None)
    try:
        got = parse_request(body, length, spec, "sig")
    except DOMAIN:
        return
    assert list(got.inputs) == list(spec.inputs)  # accepted: arrays the signature takes
    for name, arr in got.inputs.items():
        assert spec.inputs[name].accepts_shape(arr.shape)


# Content-Encoding


@PROPERTY
@given(payload=st.binary(max_size=4096), encoding=st.sampled_from(["gzip", "deflate"]),
       cut=st.integers(0, 64), noise=st.binary(max_size=32))
def test_decompress_inflates_what_was_compressed_and_refuses_the_rest(
        payload: bytes, encoding: str, cut: int, noise: bytes) -> None:
    packed = gzip.compress(payload) if encoding == "gzip" else zlib.compress(payload)
    assert decompress(packed, encoding.upper(), LIMIT) == payload
    if cut:  # a stream cut short is refused: never taken for the prefix it inflates to
        with pytest.raises((BadRequest, InvalidInput)):
            decompress(packed[:len(packed) - cut], encoding, LIMIT)
    for body in (noise, noise + packed):
        with contextlib.suppress(BadRequest, InvalidInput, PayloadTooLarge):
            assert isinstance(decompress(body, encoding, LIMIT), bytes)
    if len(payload) > 64:
        with pytest.raises(PayloadTooLarge):
            decompress(packed, encoding, 64)
    with pytest.raises(BadRequest):
        decompress(packed, "br", LIMIT)
