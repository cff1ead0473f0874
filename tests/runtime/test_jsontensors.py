"""JSON bodies straight into numpy (app/runtime/jsontensors.py): the codec's answers, each 422
of the codec, and the fast lane taken for ordinary bodies. No TensorFlow."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson
import pytest

from app.errors import InvalidInput
from app.runtime import jsontensors
from app.runtime.codec import DEFAULT_LIMITS, Limits
from app.runtime.jsontensors import decode_body, decode_reference
from app.runtime.signatures import SignatureSpec, TensorSpec

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the codec's float16 casts


def sig(**inputs: tuple[tuple[int, ...], str]) -> SignatureSpec:
    """A signature with these inputs: name=(shape, dtype)."""
    return SignatureSpec({n: TensorSpec(n, s, d) for n, (s, d) in inputs.items()}, {})


MLP = sig(x=((-1, 28, 28), "float32"), y=((-1, 10), "float32"))
TRAIN = sig(x=((-1, 3), "float32"), label=((-1,), "int32"))


def answer(fn: Any, raw: bytes, spec: SignatureSpec, limits: Limits = DEFAULT_LIMITS
           ) -> tuple[Any, ...]:
    """What a decoder answers: arrays bit for bit and the other members, or its error."""
    try:
        arrays, others = fn(raw, spec, "train", limits)
    except InvalidInput as exc:
        return "422", exc.detail
    return ("ok", [(n, a.dtype.str, a.shape, a.tolist() if a.dtype == object else a.tobytes())
                   for n, a in arrays.items()], orjson.dumps(others))


def fast(raw: bytes, spec: SignatureSpec) -> bool:
    """Whether the fast lane answered the body itself (rather than the codec)."""
    return jsontensors._fast(raw, spec) is not None


def same_as_codec(raw: bytes, spec: SignatureSpec, limits: Limits = DEFAULT_LIMITS
                  ) -> tuple[Any, ...]:
    got = answer(decode_body, raw, spec, limits)
    assert got == answer(decode_reference, raw, spec, limits)
    return got


def refused(raw: bytes, spec: SignatureSpec, *needles: str,
            limits: Limits = DEFAULT_LIMITS) -> str:
    """Assert both decoders answer the same 422, whose detail holds every needle."""
    got = same_as_codec(raw, spec, limits)
    assert got[0] == "422", got
    for needle in needles:
        assert needle in got[1], (needle, got[1])
    return str(got[1])


@pytest.fixture
def mlp_body() -> Iterator[tuple[bytes, dict[str, np.ndarray]]]:
    rng = np.random.default_rng(0)
    arrays = {"x": rng.random((32, 28, 28), dtype=np.float32),
              "y": np.eye(10, dtype=np.float32)[rng.integers(0, 10, 32)]}
    yield orjson.dumps({"inputs": arrays}, option=orjson.OPT_SERIALIZE_NUMPY), arrays


# The fast lane answers ordinary bodies, exactly as the codec


def test_mlp_batch_decodes_in_the_fast_lane_bit_for_bit(mlp_body: Any) -> None:
    raw, sent = mlp_body
    assert fast(raw, MLP)
    arrays, others = decode_body(raw, MLP, "train", DEFAULT_LIMITS)
    assert list(arrays) == ["x", "y"] and others == {}
    for name, arr in sent.items():
        assert arrays[name].dtype == np.float32 and arrays[name].shape == arr.shape
        assert arrays[name].tobytes() == arr.tobytes()
        assert arrays[name].flags.writeable and arrays[name].flags.c_contiguous
    same_as_codec(raw, MLP)


def test_other_members_come_back_as_orjson_reads_them() -> None:
    raw = (b'{"batches": 8, "note": "a ]} \\" [", "meta": {"k": [1, {"b": "]"}], "k": -0.0},'
           b' "inputs": {"label": [0, 2], "x": [[1, 2, 3], [4, 5, 6.5]]},'
           b' "batches": 4, "z": null}')
    assert fast(raw, TRAIN)
    arrays, others = decode_body(raw, TRAIN, "train", DEFAULT_LIMITS)
    assert others == {"batches": 4, "note": 'a ]} " [', "meta": {"k": -0.0}, "z": None}
    assert list(others) == ["batches", "note", "meta", "z"]  # orjson's order: first seen
    same_as_codec(raw, TRAIN)


def test_whitespace_escaped_names_and_pretty_printing_stay_in_the_fast_lane() -> None:
    body = {"inputs": {"x": [[1.5, -2, 3e-3]], "label": [7]}, "batches": 1}
    for raw in (json.dumps(body, indent=2).encode(), json.dumps(body).encode(),
                b'{ "\\u0069nputs" :\t{\r\n"\\u0078" : [ [ 1.5 ,-2, 3E-3 ] ] ,'
                b' "label":[ 7 ] } , "batches" : 1 }\n'):
        assert fast(raw, TRAIN), raw
        got = same_as_codec(raw, TRAIN)
        assert got[0] == "ok"


def test_integers_become_floats_as_numpy_makes_them() -> None:
    spec = sig(v=((-1,), "float32"), w=((6,), "float64"))
    # All integers: numpy makes int64, then float32 (one rounding). -0 is the integer 0.
    # A float among them: float64 first. -0.0 keeps its sign.
    raw = (b'{"inputs": {"v": [16777217, -0, 9007199254740993, 33554435],'
           b' "w": [-0, -0.0, 9007199254740993, 0.5, 1e-400, 18446744073709551615]}}')
    assert fast(raw, spec)
    arrays, _ = decode_body(raw, spec, "train", DEFAULT_LIMITS)
    assert arrays["v"].tolist() == [16777216.0, 0.0, 9007199254740992.0, 33554436.0]
    assert np.signbit(arrays["w"]).tolist() == [False, True, False, False, False, False]
    same_as_codec(raw, spec)


def test_a_large_integer_rounds_once_or_twice_as_in_the_codec() -> None:
    """Beside integers only, int64 -> float32 rounds once; beside a float, numpy goes
    through float64 first, and the same integer lands on another float32."""
    spec = sig(v=((-1,), "float32"))
    big = 2**60 + 2**36 + 1
    alone = f'{{"inputs": {{"v": [{big}, 1]}}}}'.encode()
    mixed = f'{{"inputs": {{"v": [{big}, 0.5]}}}}'.encode()
    assert fast(alone, spec) and fast(mixed, spec)
    assert int(decode_body(alone, spec, "t", DEFAULT_LIMITS)[0]["v"][0]) == 2**60 + 2**37
    assert int(decode_body(mixed, spec, "t", DEFAULT_LIMITS)[0]["v"][0]) == 2**60
    same_as_codec(alone, spec)
    same_as_codec(mixed, spec)


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "int64", "uint8", "uint16",
                                   "uint32", "uint64"])
def test_integer_inputs_take_their_whole_range(dtype: str) -> None:
    info = np.iinfo(dtype)
    top = min(int(info.max), 2**63 - 1)  # beyond int64 only the codec decides
    raw = orjson.dumps({"inputs": {"v": [[int(info.min), top], [0, -0 if info.min else 1]]}})
    spec = sig(v=((-1, 2), dtype))
    assert fast(raw, spec)
    got = same_as_codec(raw, spec)
    assert got[0] == "ok" and got[1][0][1] == np.dtype(dtype).str


def test_scalar_inputs_are_read_as_the_codec_reads_them() -> None:
    spec = sig(lr=((), "float32"), path=((), "string"), x=((-1, 3), "float32"))
    raw = b'{"inputs": {"lr": 0.25, "path": "/tmp/a\\u00e9", "x": [[1, 2, 3]]}}'
    assert fast(raw, spec)
    arrays, _ = decode_body(raw, spec, "train", DEFAULT_LIMITS)
    assert arrays["lr"].shape == () and arrays["lr"].item() == 0.25
    assert arrays["path"].item() == "/tmp/aé".encode()
    same_as_codec(raw, spec)


@pytest.mark.parametrize("dtype", ["float16", "bool", "string"])
def test_other_dtypes_go_to_the_codec_with_the_same_answer(dtype: str) -> None:
    value = {"float16": [[1.5, 70000]], "bool": [[True, False]], "string": [["a", "b"]]}[dtype]
    raw = orjson.dumps({"inputs": {"v": value}})
    spec = sig(v=((-1, 2), dtype))
    assert not fast(raw, spec)
    same_as_codec(raw, spec)


# Every 422 of the codec, word for word


def test_unknown_and_missing_inputs() -> None:
    refused(b'{"inputs": {"x": [[1, 2, 3]], "z": [1]}}', TRAIN,
            "missing input(s) 'label'", "unknown input(s) 'z'", "'x' [-1, 3] float32")
    refused(b'{"inputs": {"x": [[1, 2, 3]]}}', TRAIN, "missing input(s) 'label'")


@pytest.mark.parametrize("raw", [
    b"[1]", b'"inputs"', b"{}", b'{"x": [[1, 2, 3]]}', b'{"inputs": [[1, 2, 3]]}',
    b'{"inputs": null}', b'{"inputs": {"x": [[1, 2, 3]], "label": [1]}, "inputs": 3}',
])
def test_body_must_be_an_object_with_an_inputs_object(raw: bytes) -> None:
    refused(raw, TRAIN, '"inputs"')


@pytest.mark.parametrize("raw", [
    b"", b"{", b'{"inputs": {"x": [[1, 2, 3]], "label": [1]}', b"\xef\xbb\xbf{}",
    b'{"inputs": {"x": [[1, 2, 3,]], "label": [1]}}', b'{"inputs": {"x": [[NaN]]}}',
    b'{"inputs": {"x": [[1e400, 0, 0]], "label": [1]}}', b'{"a": "\\ud800"}',
    b'{"inputs": {}} x', b'{"a": "\xff"}',
])
def test_unparsable_bodies(raw: bytes) -> None:
    refused(raw, TRAIN, "body is not valid JSON: ")


@pytest.mark.parametrize(("value", "shape"), [
    (b"[[1, 2, 3], [4, 5, 6, 7, 8]]", (2, 4)),  # as many numbers as a (2, 4) array
    (b"[[1, 2], [3, 4, 5], [6]]", (3, 2)),
    (b"[[1, [2]], [3, 4]]", (2, 2)),  # as many numbers, as many elements per row
    (b"[[1, 2], [[3], []]]", (2, 2)),
    (b"[[1, 2], 3, [4]]", (3, 2)),
    (b"[[1, 2], [3, 4], []]", (3, 2)),
    (b"[[[1, 2], [3, 4]], [[5, 6, 7, 8]]]", (2, 2, 2)),
])
def test_ragged_arrays_are_refused_even_when_the_sizes_add_up(value: bytes,
                                                              shape: tuple[int, ...]) -> None:
    spec = sig(v=((-1, *shape[1:]), "float32"))
    detail = refused(b'{"inputs": {"v": ' + value + b"}}", spec, "'v'")
    assert "rectangular" in detail or "shape" in detail


@pytest.mark.parametrize(("value", "dtype", "problem"), [
    (b'[["a", 1]]', "float32", "string values"),
    (b"[[1, null]]", "float32", "mixed or null values"),
    (b"[[1, true]]", "float32", "bool values among numbers"),
    (b"[[true, false]]", "int32", "bool values"),
    (b"[[1.0, 2]]", "int32", "float values"),
    (b"[[1, 2e0]]", "int64", "float values"),
    (b"[[-1, 9223372036854775808]]", "int64", "float values"),
    (b"[[200, 1]]", "int8", "out of range"),
    (b"[[-1, 1]]", "uint8", "out of range"),
    (b"[[9223372036854775808, 9223372036854775809]]", "int64", "out of range"),
    (b"[[9223372036854775808, 1]]", "uint64", "float values"),  # numpy: uint64 + int64
    (b"[[18446744073709551616, 1]]", "uint64", "float values"),
    (b"[[3.5e38, 1]]", "float32", "do not fit"),
    (b"[[1, -3.5e38]]", "float32", "do not fit"),
    (b"[[1e39, 0.5]]", "float32", "do not fit"),
    (b'[{"a": 1}]', "float32", "'v'"),
    (b'"[1, 2]"', "float32", "string values"),
])
def test_wrong_kinds_and_values_out_of_range(value: bytes, dtype: str, problem: str) -> None:
    refused(b'{"inputs": {"v": ' + value + b"}}", sig(v=((-1, 2), dtype)), "'v'", problem)


def test_shapes_and_empty_tensors() -> None:
    refused(b'{"inputs": {"x": [[1, 2, 3, 4]], "label": [1]}}', TRAIN,
            "expected shape [-1, 3]", "received shape [1, 4]")
    refused(b'{"inputs": {"x": [[[1, 2, 3]]], "label": [1]}}', TRAIN, "received shape [1, 1, 3]")
    refused(b'{"inputs": {"x": [[1, 2, 3]], "label": []}}', TRAIN, "'label'", "empty")
    refused(b'{"inputs": {"m": [[]]}}', sig(m=((-1, -1), "float32")), "'m'", "empty")
    refused(b'{"inputs": {"x": [[1, 2, 3]], "label": 1}}', TRAIN, "'label'", "shape []")
    same_as_codec(b'{"inputs": {"m": [[], []]}}', sig(m=((-1, 0), "float32")))  # 0 allowed


def test_open_batch_dimensions_must_agree() -> None:
    raw = b'{"inputs": {"x": [[1, 2, 3], [4, 5, 6]], "label": [1, 2, 3]}}'
    assert fast(raw, TRAIN)  # the arrays are fine; the batch check refuses them
    refused(raw, TRAIN, "disagree on the batch size", "'x' has 2", "'label' has 3")


def test_limits() -> None:
    raw = b'{"inputs": {"x": [[1, 2, 3], [4, 5, 6]], "label": [1, 2]}}'
    refused(raw, TRAIN, "batch of 2; the limit is 1", limits=Limits(max_batch=1))
    refused(raw, TRAIN, "8 elements; the limit per call is 7", limits=Limits(max_elements=7))


def test_duplicate_input_names_take_the_last_value_as_orjson_does() -> None:
    refused(b'{"inputs": {"x": [[1, 2, 3]], "label": [1], "x": [[1, 2]]}}', TRAIN,
            "received shape [1, 2]")
    got = same_as_codec(b'{"inputs": {"x": [[1, 2]], "label": [1], "x": [[1, 2, 3]]}}', TRAIN)
    assert got[0] == "ok"


# Threads and garbage


def test_threads_each_read_with_their_own_parser(mlp_body: Any) -> None:
    """Parsers are pooled, one per concurrent call; a call that fails (here: bools, which
    simdjson refuses to put in a buffer) leaves nothing behind that blocks the next."""
    raw, sent = mlp_body
    bad = b'{"inputs": {"x": [[1, true, 3]], "label": [1]}}'
    want = answer(decode_reference, bad, TRAIN)

    def work(_: int) -> bool:
        for _ in range(10):
            arrays, _others = decode_body(raw, MLP, "train", DEFAULT_LIMITS)
            assert arrays["x"].tobytes() == sent["x"].tobytes()
            assert answer(decode_body, bad, TRAIN) == want
        return fast(raw, MLP)

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(8)))



def test_fast_lane_keeps_the_garbage_collector_out(mlp_body: Any) -> None:
    """Decoding a batch leaves no crowd of container objects for gen-0 collections to chase:
    the codec's path builds a list per row (and triggers collections), the fast lane not."""
    raw, _ = mlp_body

    def collections(fn: Any) -> int:
        gc.collect()
        before = gc.get_stats()[0]["collections"]
        for _ in range(20):
            fn(raw, MLP, "train", DEFAULT_LIMITS)
        return gc.get_stats()[0]["collections"] - before

    threshold = gc.get_threshold()
    gc.set_threshold(200, *threshold[1:])
    try:
        assert collections(decode_reference) > 0  # the test can see a collection
        assert collections(decode_body) == 0
    finally:
        gc.set_threshold(*threshold)
