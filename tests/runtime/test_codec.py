"""JSON tensors in and out: app/runtime/codec.py and app/runtime/signatures.py, no TensorFlow."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from app.errors import InvalidInput
from app.runtime.codec import decode_inputs, decode_value, encode_outputs
from app.runtime.signatures import (
    SignatureSpec,
    TensorSpec,
    dtype_name,
    numpy_dtype,
    signatures_as_json,
    signatures_from_json,
)

X = TensorSpec("x", (-1, 3), "float32")
LABEL = TensorSpec("label", (-1,), "int32")
TRAIN = SignatureSpec(inputs={"x": X, "label": LABEL},
                      outputs={"loss": TensorSpec("loss", (), "float32")})
INFER = SignatureSpec(inputs={"x": X}, outputs={"probs": TensorSpec("probs", (-1, 4), "float32")})
SAVE = SignatureSpec(inputs={"path": TensorSpec("path", (), "string")},
                     outputs={"checkpoint_path": TensorSpec("checkpoint_path", (), "string")})

PROPERTY = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def rejects(spec: TensorSpec, value: Any, *needles: str) -> str:
    """Assert decode_value raises InvalidInput whose detail holds every needle."""
    with pytest.raises(InvalidInput) as info:
        decode_value(spec, value)
    detail = info.value.detail
    for needle in needles:
        assert needle in detail, (needle, detail)
    return detail


# decode_inputs / decode_value


def test_decode_inputs_accepts_open_batch_and_returns_typed_arrays() -> None:
    body = {"inputs": {"label": [0, 2], "x": [[1.5, 2, 3], [4, 5, 6.25]]}}
    arrays = decode_inputs(TRAIN, body, "train")
    assert list(arrays) == ["x", "label"]  # the signature's order, whatever the body's
    assert arrays["x"].dtype == np.float32 and arrays["x"].shape == (2, 3)
    assert arrays["label"].dtype == np.int32 and arrays["label"].shape == (2,)
    np.testing.assert_array_equal(arrays["x"], [[1.5, 2, 3], [4, 5, 6.25]])
    np.testing.assert_array_equal(arrays["label"], [0, 2])


@pytest.mark.parametrize("batch", [1, 5])
def test_open_dimension_takes_any_size(batch: int) -> None:
    arr = decode_value(X, [[0.0, 1.0, 2.0]] * batch)
    assert arr.shape == (batch, 3)


def test_float32_accepts_json_integers() -> None:
    arr = decode_value(X, [[1, 2, 3]])
    assert arr.dtype == np.float32
    np.testing.assert_array_equal(arr, np.array([[1.0, 2.0, 3.0]], dtype=np.float32))


def test_int32_accepts_its_whole_range() -> None:
    arr = decode_value(LABEL, [2**31 - 1, -(2**31), 0])
    assert arr.dtype == np.int32
    assert arr.tolist() == [2**31 - 1, -(2**31), 0]


def test_int32_rejects_floats_naming_tensor_and_dtypes() -> None:
    rejects(LABEL, [0.5, 1], "'label'", "int32", "float")


def test_int32_rejects_integral_floats_too() -> None:
    rejects(LABEL, [1.0, 2.0], "'label'", "int32", "float")


def test_int32_rejects_bools() -> None:
    rejects(LABEL, [True, False], "'label'", "int32", "bool")


def test_float32_rejects_bools() -> None:
    rejects(X, [[True, False, True]], "'x'", "float32", "bool")


@pytest.mark.parametrize("value", [2**40, -(2**40), 2**31])
def test_int32_rejects_values_out_of_range(value: int) -> None:
    rejects(LABEL, [0, value], "'label'", "int32", "range")


@pytest.mark.parametrize("spec", [LABEL, TensorSpec("v", (-1,), "float32")])
def test_bools_mixed_with_numbers_rejected(spec: TensorSpec) -> None:
    rejects(spec, [1, True], spec.dtype, "bool")


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_float32_rejects_values_it_cannot_hold() -> None:
    rejects(X, [[1e39, 0, 0]], "'x'", "float32")


def test_uint8_rejects_negative_values() -> None:
    rejects(TensorSpec("pixels", (-1,), "uint8"), [0, -1], "'pixels'", "uint8", "range")


@pytest.mark.parametrize("value", [[[1, 2, 3], [4, 5]], [[1, 2, 3], 4]])
def test_ragged_lists_rejected(value: Any) -> None:
    rejects(X, value, "'x'", "rectangular")


@pytest.mark.parametrize("value", [[["a", "b", "c"]], [[1, "2", 3]], "abc"])
def test_strings_rejected_for_numeric(value: Any) -> None:
    rejects(X, value, "'x'", "float32", "string")


@pytest.mark.parametrize("value", [[[1, None, 3]], None, {"a": 1}])
def test_null_and_objects_rejected_for_numeric(value: Any) -> None:
    rejects(X, value, "'x'", "float32")


def test_missing_and_unknown_inputs_are_listed() -> None:
    body = {"inputs": {"x": [[1, 2, 3]], "z": [1], "extra": 2}}
    with pytest.raises(InvalidInput) as info:
        decode_inputs(TRAIN, body, "train")
    detail = info.value.detail
    assert "signature 'train'" in detail
    assert "missing input(s) 'label'" in detail
    assert "unknown input(s) 'extra', 'z'" in detail
    # and it says what the signature takes
    assert "'x' [-1, 3] float32" in detail and "'label' [-1] int32" in detail


def test_only_missing_inputs() -> None:
    with pytest.raises(InvalidInput) as info:
        decode_inputs(TRAIN, {"inputs": {"label": [1]}}, "train")
    assert "missing input(s) 'x'" in info.value.detail
    assert "unknown" not in info.value.detail


@pytest.mark.parametrize("body", [None, [], {"x": [[1, 2, 3]]}, {"inputs": [[1, 2, 3]]},
                                  {"inputs": None}])
def test_body_must_be_an_inputs_object(body: Any) -> None:
    with pytest.raises(InvalidInput) as info:
        decode_inputs(INFER, body, "infer")
    assert '"inputs"' in info.value.detail


def test_empty_batch_rejected() -> None:
    rejects(LABEL, [], "'label'", "empty")
    rejects(X, [], "'x'")  # [] has shape [0], not [-1, 3]
    rejects(TensorSpec("m", (-1, -1), "float32"), [[]], "'m'", "empty")
    with pytest.raises(InvalidInput):
        decode_inputs(TRAIN, {"inputs": {"x": [], "label": []}}, "train")


def test_scalar_spec_accepts_scalars_only() -> None:
    lr = TensorSpec("lr", (), "float32")
    arr = decode_value(lr, 0.25)
    assert arr.shape == () and arr.dtype == np.float32 and arr.item() == 0.25
    rejects(lr, [0.25], "'lr'", "expected shape []", "received shape [1]")


def test_string_dtype_encodes_to_bytes() -> None:
    path = decode_value(SAVE.inputs["path"], "/tmp/ckpt")
    assert path.shape == () and path.dtype == object
    assert path.item() == b"/tmp/ckpt"
    words = decode_value(TensorSpec("words", (-1,), "string"), ["é", "b"])
    assert words.shape == (2,)
    assert words.tolist() == ["é".encode(), b"b"]
    assert all(isinstance(w, bytes) for w in words)


@pytest.mark.parametrize("value", [1, [b"raw"], None])
def test_string_dtype_rejects_non_strings(value: Any) -> None:
    rejects(TensorSpec("words", (-1,), "string"), value, "'words'")


def test_string_dtype_checks_shape() -> None:
    rejects(SAVE.inputs["path"], ["a", "b"], "'path'", "received shape [2]")


def test_fixed_batch_dimension_rejects_other_batch_sizes() -> None:
    # tf.lite would silently resize the input tensor; the codec must refuse instead.
    fixed = TensorSpec("x", (8, 4), "float32")
    rejects(fixed, [[0.0] * 4] * 3, "'x'", "expected shape [8, 4]", "received shape [3, 4]")
    assert decode_value(fixed, [[0.0] * 4] * 8).shape == (8, 4)


def test_inner_dimension_mismatch_rejected() -> None:
    rejects(X, [[1, 2, 3, 4]], "'x'", "expected shape [-1, 3]", "received shape [1, 4]")
    rejects(X, [[[1, 2, 3]]], "'x'", "received shape [1, 1, 3]")


# encode_outputs


def test_encode_zero_d_arrays_become_python_scalars() -> None:
    out = encode_outputs({
        "loss": np.array(2.5, dtype=np.float32),
        "step": np.array(3, dtype=np.int64),
        "ok": np.array(True),
        "scalar_np": np.float32(0.5),  # numpy scalars too
    })
    assert out == {"loss": 2.5, "step": 3, "ok": True, "scalar_np": 0.5}
    assert type(out["loss"]) is float and type(out["step"]) is int and type(out["ok"]) is bool
    assert type(out["scalar_np"]) is float


def test_encode_bytes_become_str() -> None:
    out = encode_outputs({
        "path": np.array(b"/tmp/a.ckpt", dtype=object),
        "labels": np.array([[b"cat"], [b"dog"]], dtype=object),
        "fixed": np.array([b"x", b"yz"]),  # dtype S2
        "bad": np.array([b"\xff"], dtype=object),
    })
    assert out["path"] == "/tmp/a.ckpt"
    assert out["labels"] == [["cat"], ["dog"]]
    assert out["fixed"] == ["x", "yz"]
    assert out["bad"] == ["\ufffd"]  # invalid UTF-8 is replaced, not a 500
    orjson.dumps(out)  # all plain JSON


def test_encode_keeps_ndarrays_and_orjson_round_trips_them() -> None:
    probs = np.random.default_rng(0).random((2, 4), dtype=np.float32)
    ids = np.array([[1, 2], [3, 4]], dtype=np.int32)
    out = encode_outputs({"probs": probs, "ids": ids})
    assert isinstance(out["probs"], np.ndarray) and isinstance(out["ids"], np.ndarray)
    np.testing.assert_array_equal(out["probs"], probs)
    with pytest.raises(TypeError):
        orjson.dumps(out)  # proves the option below is what makes it serializable
    back = orjson.loads(orjson.dumps({"outputs": out}, option=orjson.OPT_SERIALIZE_NUMPY))
    np.testing.assert_array_equal(np.asarray(back["outputs"]["probs"], dtype=np.float32), probs)
    assert back["outputs"]["ids"] == [[1, 2], [3, 4]]


# signatures


def test_signatures_json_round_trip() -> None:
    sigs = {"train": TRAIN, "infer": INFER, "save": SAVE}
    data = signatures_as_json(sigs)
    assert list(data) == ["infer", "save", "train"]
    assert data["train"]["inputs"]["x"] == {"shape": [-1, 3], "dtype": "float32"}
    assert data["save"]["inputs"]["path"] == {"shape": [], "dtype": "string"}
    back = signatures_from_json(orjson.loads(orjson.dumps(data)))  # as stored in the DB
    assert back == sigs
    assert back["train"].inputs["x"].shape == (-1, 3)  # tuples again, not lists


@pytest.mark.parametrize(("spec_shape", "shape", "ok"), [
    ((-1, 28, 28), (1, 28, 28), True),
    ((-1, 28, 28), (7, 28, 28), True),
    ((-1, 28, 28), (7, 28), False),
    ((-1, 28, 28), (7, 28, 27), False),
    ((-1, 28, 28), (7, 28, 28, 1), False),
    ((), (), True),
    ((), (1,), False),
    ((8, 4), (8, 4), True),
    ((8, 4), (3, 4), False),
    ((-1, -1), (0, 9), True),
])
def test_accepts_shape(spec_shape: tuple[int, ...], shape: tuple[int, ...], ok: bool) -> None:
    assert TensorSpec("t", spec_shape, "float32").accepts_shape(shape) is ok


def test_dtype_names() -> None:
    assert dtype_name(np.float32) == "float32"
    assert dtype_name(np.int32) == "int32"
    assert dtype_name(np.bool_) == "bool"
    assert dtype_name(np.bytes_) == "string" and dtype_name(object) == "string"
    assert numpy_dtype("string") == np.dtype(object)
    assert numpy_dtype("int32") == np.dtype(np.int32)


# properties

DIMS = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)
FLOAT32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@st.composite
def spec_for(draw: st.DrawFn, dims: tuple[int, ...]) -> TensorSpec:
    """A spec matching dims, with some dimensions opened to -1."""
    return TensorSpec("t", tuple(-1 if draw(st.booleans()) else d for d in dims), "float32")


@PROPERTY
@given(data=st.data(), dims=DIMS)
def test_property_matching_shapes_decode_exactly(data: st.DataObject, dims: tuple[int, ...]
                                                 ) -> None:
    arr = data.draw(hnp.arrays(np.float32, dims, elements=FLOAT32))
    spec = data.draw(spec_for(dims))
    out = decode_value(spec, arr.tolist())
    assert out.dtype == np.float32 and out.shape == dims
    np.testing.assert_array_equal(out, arr)


@PROPERTY
@given(data=st.data(), spec_dims=DIMS, dims=DIMS)
def test_property_wrong_shapes_raise_invalid_input(data: st.DataObject,
                                                   spec_dims: tuple[int, ...],
                                                   dims: tuple[int, ...]) -> None:
    spec = data.draw(spec_for(spec_dims))
    assume(not spec.accepts_shape(dims))
    value = np.zeros(dims, dtype=np.float32).tolist()
    with pytest.raises(InvalidInput):
        decode_value(spec, value)


JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                      st.text(max_size=3))
JSON_VALUE = st.recursive(JSON_LEAF, lambda inner: st.lists(inner, max_size=4), max_leaves=20)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # see above
@PROPERTY
@given(value=JSON_VALUE, spec=st.sampled_from([
    X, LABEL, TensorSpec("u", (-1,), "uint8"), TensorSpec("s", (), "float32"),
    TensorSpec("w", (-1,), "string"), TensorSpec("b", (-1,), "bool"),
]))
def test_property_any_json_decodes_or_raises_invalid_input(value: Any, spec: TensorSpec
                                                           ) -> None:
    try:
        out = decode_value(spec, value)
    except InvalidInput:
        return
    assert spec.accepts_shape(out.shape)
    assert out.dtype == numpy_dtype(spec.dtype)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_truncated_compressed_body_is_invalid_input(encoding: str) -> None:
    import gzip
    import zlib

    from app.runtime.oip_codec import decompress

    body = b'{"inputs": []}' * 200
    packed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    assert decompress(packed, encoding, 1 << 20) == body
    for cut in (len(packed) // 2, len(packed) - 1):  # a prefix; the last byte missing
        with pytest.raises(InvalidInput) as info:
            decompress(packed[:cut], encoding, 1 << 20)
        assert "truncated" in info.value.detail
