"""Properties of app/runtime/jsontensors.py against the codec (orjson.loads + decode_inputs).

Random signatures (1-3 inputs, rank 0-4, any dtype, open and fixed dimensions) and random
JSON text for them: numbers spelled many ways (-0, 1E+5, 2.50, decimals hard to round,
integers past 64 bits), bools, nulls, strings with escapes, ragged nesting (including
rows that trade elements so the sizes still add up), nested scalars, empty arrays, escaped
and duplicate keys, other members before and after "inputs", random whitespace, broken
bytes. Either both answer the same arrays bit for bit and the same other members, or both
raise the same exception with the same message.
"""

from __future__ import annotations

import copy
import random
from typing import Any, Literal

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.runtime import jsontensors
from app.runtime.codec import Limits
from app.runtime.jsontensors import decode_body, decode_reference
from app.runtime.signatures import SignatureSpec, TensorSpec

PROPERTY = settings(max_examples=400, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the codec's float16 casts

NAMES = ["x", "y", "label", "é", 'a"b', "in 0", "inputs"]
DTYPES = ["float32", "float64", "float16", "int8", "int32", "int64", "uint8", "uint64",
          "bool", "string"]
FAST = ["float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
        "uint64"]
WHITESPACE = ["", "", "", " ", "\n", "\t", "\r\n  "]
ODD: st.SearchStrategy[Any] = st.sampled_from([
    None, True, False, "", "a", "]", '"}', 2**63, 2**63 - 1, -(2**63), -(2**63) - 1, 2**64 - 1,
    2**64, 10**30, -(10**30), 1e39, -3.5e38, 3.4028235e38, 3.4028236e38, 5e-324, -0.0, 0,
    65504.0, 70000, 0.5, 1.0, [], {}, {"a": [1]},
]).map(copy.deepcopy)  # mutate() changes lists in place


class Num:
    """A number token written as is (a spelling orjson.dumps would not choose)."""

    def __init__(self, text: str) -> None:
        self.text = text


class Pairs(list):  # type: ignore[type-arg]
    """An object as a list of (key, value) pairs, so keys may repeat."""


def element(dtype: str) -> st.SearchStrategy[Any]:
    """A value the dtype holds, as JSON would carry it."""
    if dtype.startswith("float"):
        width: Literal[16, 32, 64] = 16 if dtype == "float16" else 32 if dtype == "float32" else 64
        return st.floats(width=width, allow_nan=False, allow_infinity=False) | st.integers(-9, 9)
    if dtype == "bool":
        return st.booleans()
    if dtype == "string":
        return st.text(max_size=3)
    info = np.iinfo(dtype)
    return st.integers(int(info.min), min(int(info.max), 2**63 - 1))


DECIMAL = st.builds(
    lambda sign, digits, point, exp: Num(
        sign + (digits[:point] + "." + digits[point:] if 0 < point < len(digits) else digits)
        + (f"e{exp}" if exp is not None else "")),
    st.sampled_from(["", "-"]), st.text("0123456789", min_size=1, max_size=25).map(
        lambda d: d.lstrip("0") or "0"),
    st.integers(0, 25), st.none() | st.integers(-330, 310) | st.integers(30, 45))


def nested(draw: st.DrawFn, shape: tuple[int, ...], leaf: st.SearchStrategy[Any]) -> Any:
    if not shape:
        return draw(leaf)
    return [nested(draw, shape[1:], leaf) for _ in range(shape[0])]


def mutate(draw: st.DrawFn, value: Any) -> Any:
    """One change that may make the nesting ragged, deeper, shallower or empty."""
    if not isinstance(value, list) or not value:
        return draw(ODD)
    rows = [value]  # every list inside, outermost first
    for row in rows:
        rows.extend(c for c in row if isinstance(c, list))
    row = draw(st.sampled_from(rows))
    if not row:
        row.append(draw(ODD))
        return value
    i = draw(st.integers(0, len(row) - 1))
    kind = draw(st.integers(0, 6))
    others = [r for r in rows if r is not row and r and type(r[0]) is type(row[0])]
    if kind == 0 and others:  # move an element to a sibling: the total stays the same
        draw(st.sampled_from(others)).append(row.pop(i))
    elif kind == 1:
        row[i] = [row[i]]
    elif kind == 2 and isinstance(row[i], list) and row[i]:
        row[i] = row[i][0]
    elif kind == 3:
        row.pop(i)
    elif kind == 4:
        row.append(row[i])
    elif kind == 5:
        row[i] = draw(ODD)
    else:
        row[i] = []
    return value


def rare(draw: st.DrawFn, odds: int) -> bool:
    """True once in odds + 1 draws (hypothesis would favour 0 in integers(0, odds) == 0)."""
    return bool(draw(st.sampled_from([False] * odds + [True])))


@st.composite
def case(draw: st.DrawFn, dtypes: list[str] = DTYPES, clean: bool = False
         ) -> tuple[SignatureSpec, Any, Limits]:
    """A signature and a body for it (Pairs), or something near one unless clean."""
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    batch = draw(st.integers(1, 3))
    specs, inputs = {}, Pairs()
    for name in names:
        dtype = draw(st.sampled_from(dtypes))
        rank = draw(st.integers(1 if clean else 0, 4))
        shape = tuple([batch] * min(rank, 1) + draw(st.lists(st.integers(1, 3), min_size=max(
            rank - 1, 0), max_size=max(rank - 1, 0))))
        dims = tuple(-1 if draw(st.booleans()) else d for d in shape)
        specs[name] = TensorSpec(name, dims, dtype)
        leaf = element(dtype)
        if not clean and rare(draw, 3):
            leaf = leaf | ODD | (DECIMAL if dtype.startswith("float") else st.nothing())
        elif dtype.startswith("float") and draw(st.booleans()):
            leaf = DECIMAL if not clean else leaf
        value = nested(draw, shape, leaf)
        for _ in range(0 if clean else draw(st.sampled_from([0, 0, 0, 1, 2]))):
            value = mutate(draw, value)
        inputs.append((name, value))
    if not clean:
        if rare(draw, 5) and inputs:  # a duplicate key: orjson keeps the last
            inputs.insert(draw(st.integers(0, len(inputs))), draw(st.sampled_from(inputs)))
        if rare(draw, 7):
            inputs.pop(draw(st.integers(0, len(inputs) - 1)))
        if rare(draw, 7):
            inputs.append(("zz", [1]))
    body = Pairs([("inputs", inputs)])
    for _ in range(draw(st.integers(0, 2))):
        member = (draw(st.sampled_from(["batches", "note", "meta"])),
                  draw(st.integers(-2, 40) | st.text(max_size=4) | st.sampled_from(
                      ["[{\"", ["]", {"}": [1]}], Pairs([("k", 1), ("k", -0.0)])])))
        body.insert(draw(st.integers(0, len(body))), member)
    if not clean and rare(draw, 19):
        body = draw(st.sampled_from([inputs, [inputs], Pairs([("inputs", [1])]),
                                     Pairs([("inputs", inputs), ("inputs", Pairs())])]))
    limits = Limits() if clean or draw(st.booleans()) else Limits(
        max_elements=draw(st.integers(1, 40)), max_batch=draw(st.integers(1, 3)))
    return SignatureSpec(specs, {}), body, limits


def render(value: Any, rnd: random.Random) -> str:
    """JSON text with random whitespace, number spellings and key escapes."""
    def ws() -> str:
        return rnd.choice(WHITESPACE)

    if isinstance(value, Num):
        return value.text
    if isinstance(value, Pairs | dict):
        items = value if isinstance(value, Pairs) else list(value.items())
        return "{" + ws() + ",".join(f"{ws()}{key(k, rnd)}{ws()}:{ws()}{render(v, rnd)}{ws()}"
                                     for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ws() + ",".join(ws() + render(v, rnd) + ws() for v in value) + "]"
    if isinstance(value, str):
        return key(value, rnd)
    if isinstance(value, bool) or value is None:
        return orjson.dumps(value).decode()
    if isinstance(value, int):
        return "-0" if value == 0 and rnd.random() < 0.3 else str(value)
    if value.is_integer() and abs(value) < 1e15 and rnd.random() < 0.3:
        return rnd.choice([f"{value:.1f}", f"{value:.0e}", f"{value:E}"])
    return rnd.choice([repr(value), f"{value:.17g}", f"{value:.9g}"]).replace("inf", "1e999")


def key(text: str, rnd: random.Random) -> str:
    """A JSON string, at times with every character escaped."""
    if rnd.random() < 0.2:
        return '"' + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else c for c in text) + '"'
    return orjson.dumps(text).decode()


def answer(fn: Any, raw: bytes, spec: SignatureSpec, limits: Limits) -> tuple[Any, ...]:
    """A decoder's answer: arrays bit for bit and the other members, or its exception."""
    try:
        arrays, others = fn(raw, spec, "sig", limits)
    except Exception as exc:  # the codec's own exception, whatever it is
        return type(exc).__name__, getattr(exc, "detail", str(exc))
    return ("ok", [(n, a.dtype.str, a.shape, a.tolist() if a.dtype == object else a.tobytes())
                   for n, a in arrays.items()], orjson.dumps(others))


def mangle(raw: bytes, rnd: random.Random) -> bytes:
    """Sometimes break the bytes: cut them, prefix a BOM, insert or replace a byte."""
    at = rnd.randrange(len(raw) + 1)
    if rnd.random() < 0.85:
        return raw
    return rnd.choice([raw[:at], b"\xef\xbb\xbf" + raw, raw[:at] + b"x" + raw[at + 1:],
                       raw[:at] + rnd.choice(b'[]{},:"\\ 0-.eE\xff').to_bytes(1, "big") + raw[at:]])


@PROPERTY
@given(c=case(), rnd=st.randoms(use_true_random=False))
def test_any_body_gets_the_codecs_answer(c: tuple[SignatureSpec, Any, Limits],
                                         rnd: random.Random) -> None:
    spec, body, limits = c
    raw = mangle(render(body, rnd).encode(), rnd)
    assert answer(decode_body, raw, spec, limits) == answer(decode_reference, raw, spec, limits)


@PROPERTY
@given(c=case(dtypes=FAST, clean=True), rnd=st.randoms(use_true_random=False))
def test_well_formed_numeric_bodies_take_the_fast_lane(c: tuple[SignatureSpec, Any, Limits],
                                                       rnd: random.Random) -> None:
    """Not only the same answer, but the fast lane's own: it does not hand these over."""
    spec, body, limits = c
    raw = render(body, rnd).encode()
    want = answer(decode_reference, raw, spec, limits)
    if want[0] == "InvalidInput" and "do not fit" not in want[1]:  # only decimals overflow
        raise AssertionError(want)
    assert answer(decode_body, raw, spec, limits) == want
    assert (jsontensors._fast(raw, spec) is not None) == (want[0] == "ok")


@PROPERTY
@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=4).map(tuple), data=st.data(),
       dtype=st.sampled_from(["float32", "int32"]))
def test_ragged_arrays_whose_sizes_add_up_are_refused(shape: tuple[int, ...],
                                                      data: st.DataObject, dtype: str) -> None:
    """Elements moved between rows: as many numbers as the shape holds, and still a 422."""
    value = np.arange(int(np.prod(shape))).reshape(shape).tolist()
    rows = [r for r in _lists(value) if r and not isinstance(r[0], list)]
    if len(rows) < 2:
        return
    src, dst = data.draw(st.permutations(range(len(rows))))[:2]
    rows[dst].append(rows[src].pop())
    spec = SignatureSpec({"v": TensorSpec("v", (-1, *shape[1:]), dtype)}, {})
    raw = orjson.dumps({"inputs": {"v": value}})
    got = answer(decode_body, raw, spec, Limits())
    assert got == answer(decode_reference, raw, spec, Limits())
    assert got[0] == "InvalidInput" and "'v'" in got[1], got


def _lists(value: list[Any]) -> list[list[Any]]:
    out = [value]
    for row in out:
        out.extend(c for c in row if isinstance(c, list))
    return out


@PROPERTY
@given(values=st.lists(DECIMAL, min_size=1, max_size=8), rnd=st.randoms(use_true_random=False),
       dtype=st.sampled_from(["float32", "float64"]))
def test_decimals_round_as_orjson_and_numpy_round_them(values: list[Num], rnd: random.Random,
                                                       dtype: str) -> None:
    spec = SignatureSpec({"v": TensorSpec("v", (-1,), dtype)}, {})
    raw = render(Pairs([("inputs", Pairs([("v", values)]))]), rnd).encode()
    assert answer(decode_body, raw, spec, Limits()) == answer(decode_reference, raw, spec,
                                                              Limits())
