"""JSON tensor bodies straight into numpy, with the codec's answers and no Python float each.

simdjson validates the whole body and copies each input's numbers into one buffer
(`Array.as_buffer`); a walk over the nested arrays' lengths and a count of the '[' in the
input's bytes prove the nesting rectangular, which the flattened buffer alone cannot show
([[1, 2, 3], [4, 5, 6, 7, 8]] flattens like a (2, 4) array). Anything else the fast lane
is not sure of (a parse error, a ragged or empty array, strings, bools, nulls, integers
beyond int64, a value out of the dtype's range, float16, bool and string inputs, duplicate
keys) goes to the codec (`parse_json` + `decode_inputs`), so the arrays and the 422s are
the codec's own. Scalar inputs and the body's other members are read by orjson from their
own bytes, as the codec would read them.

Where the codec and simdjson could disagree the fast lane steps aside: simdjson accepts a
UTF-8 byte order mark that orjson refuses, and refuses integers beyond 64 bits that orjson
reads as floats. A JSON number holding '.', 'e' or 'E' is a float to both parsers and
anything else an integer, so the bytes say which dtype numpy would have made of the list.
"""

from __future__ import annotations

import math
import queue
import re
from typing import Any

import numpy as np
import orjson
import simdjson

from app.runtime.codec import (
    Limits,
    check_batch,
    check_limits,
    decode_inputs,
    decode_value,
    parse_json,
)
from app.runtime.signatures import SignatureSpec, TensorSpec

Arrays = dict[str, np.ndarray[Any, Any]]
Span = tuple[str, int, int]  # a member's key, and where its value starts and ends in the body

_FAST_DTYPES = {name: np.dtype(name) for name in (
    "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
    "uint64")}
_BOM = b"\xef\xbb\xbf"
_WS = rb"[ \t\n\r]*"
_STRING = rb'"(?:[^"\\]|\\.)*"'
_OPEN = re.compile(_WS + rb"\{" + _WS)
_KEY = re.compile(_WS + rb"(" + _STRING + rb")" + _WS + rb":" + _WS, re.DOTALL)
_SCALAR = re.compile(_STRING + rb"|[-+0-9.eE]+|true|false|null", re.DOTALL)
_AFTER = re.compile(_WS + rb"([,}])")
_TOKENS = re.compile(_STRING + rb"|[\[\]{}]", re.DOTALL)

# A parser keeps its buffers (about 4x the largest body it read) and a reader its scratch
# space between calls, so the per-step path allocates little: one reader per concurrent
# caller, dropped rather than kept after a large body.
_KEEP_BELOW = 8 << 20


class _Reader:
    """A simdjson parser and a scratch buffer, used by one call at a time."""

    def __init__(self) -> None:
        self.parser = simdjson.Parser()
        self.scratch = np.empty(0, np.bool_)

    def count(self, raw: bytes, char: str, start: int, end: int) -> int:
        """How often an ASCII char occurs in raw[start:end]."""
        if self.scratch.size < end - start:
            self.scratch = np.empty(end - start, np.bool_)
        out = self.scratch[:end - start]
        np.equal(np.frombuffer(raw, np.uint8, end - start, start), ord(char), out=out)
        return int(np.count_nonzero(out))


_READERS: queue.SimpleQueue[_Reader] = queue.SimpleQueue()


def decode_body(raw: bytes, spec: SignatureSpec, signature: str, limits: Limits
                ) -> tuple[Arrays, dict[str, Any]]:
    """A JSON body's inputs as arrays and its other top-level members, or the codec's 422."""
    fast = _fast(raw, spec) if isinstance(raw, bytes) and raw[:3] != _BOM else None
    if fast is None:
        return decode_reference(raw, spec, signature, limits)
    arrays, others = fast
    check_batch(spec, arrays)
    check_limits(spec, arrays, limits)
    return arrays, others


def decode_reference(raw: bytes, spec: SignatureSpec, signature: str, limits: Limits
                     ) -> tuple[Arrays, dict[str, Any]]:
    """The same answer through the codec: orjson.loads, then decode_inputs."""
    body, bools = parse_json(raw)
    arrays = decode_inputs(spec, body, signature, limits, may_hold_bools=bools)
    return arrays, {k: v for k, v in body.items() if k != "inputs"}


def _fast(raw: bytes, spec: SignatureSpec) -> tuple[Arrays, dict[str, Any]] | None:
    try:
        reader = _READERS.get_nowait()
    except queue.Empty:
        reader = _Reader()
    try:
        result = _decode(reader, raw, spec)
    except Exception:  # whatever the fast lane cannot read, the codec answers
        return None  # and the reader goes: a proxy kept alive would block its parser
    # The proxies of this body went with _decode's frame: the parser may read the next one.
    if len(raw) < _KEEP_BELOW:
        _READERS.put(reader)
    return result


def _decode(reader: _Reader, raw: bytes, spec: SignatureSpec
            ) -> tuple[Arrays, dict[str, Any]] | None:
    doc = reader.parser.parse(raw)  # checks the whole body: the scan below trusts its syntax
    if type(doc) is not simdjson.Object:
        return None
    layout = _layout(raw)
    if layout is None:
        return None
    members, others = layout
    names = [name for name, _, _ in members]
    inputs = doc["inputs"]
    if (len(set(names)) != len(names) or set(names) != set(spec.inputs)
            or type(inputs) is not simdjson.Object or list(inputs.keys()) != names):
        return None
    spans = {name: (start, end) for name, start, end in members}
    arrays: Arrays = {}
    for name, tensor in spec.inputs.items():
        start, end = spans[name]
        arr = _tensor(reader, tensor, inputs[name], raw, start, end)
        if arr is None:
            return None
        arrays[name] = arr
    return arrays, {key: orjson.loads(raw[start:end]) for key, start, end in others}


def _tensor(reader: _Reader, spec: TensorSpec, value: Any, raw: bytes, start: int, end: int
            ) -> np.ndarray[Any, Any] | None:
    """One input's array, or None where only the codec can say."""
    if type(value) is not simdjson.Array:  # a scalar (or an object): read as the codec reads it
        return decode_value(spec, orjson.loads(raw[start:end]))
    target = _FAST_DTYPES.get(spec.dtype)
    if target is None or not spec.shape:
        return None
    dims: list[int] = []
    node: Any = value
    for _ in spec.shape:  # the lengths along the first elements; the walk checks the rest
        if type(node) is not simdjson.Array or len(node) == 0:
            return None
        dims.append(len(node))
        node = node[0]
    shape = tuple(dims)
    if not spec.accepts_shape(shape):
        return None
    floats = any(raw.find(c, start, end) >= 0 for c in (b".", b"e", b"E"))
    if floats and target.kind != "f":
        return None
    # numpy makes float64 of a list holding a float, int64 of integers that fit it.
    flat = np.frombuffer(value.as_buffer(of_type="d" if floats else "i"),
                         np.float64 if floats else np.int64)
    if flat.size != math.prod(shape) or not _rectangular(value, shape):
        return None
    arrays = sum(math.prod(shape[:level]) for level in range(len(shape)))
    if reader.count(raw, "[", start, end) != arrays:
        return None  # an array inside an innermost array
    if target.kind in "iu":
        info = np.iinfo(target)
        if int(flat.min()) < info.min or int(flat.max()) > info.max:
            return None
    elif floats and target.itemsize < 8:
        limit = float(np.finfo(target).max)
        if float(flat.max()) > limit or float(flat.min()) < -limit:
            return None
    return flat.reshape(shape).astype(target, copy=False)


def _rectangular(node: Any, dims: tuple[int, ...]) -> bool:
    """Whether every nested array has its level's length (the leaves are checked apart)."""
    if len(node) != dims[0]:
        return False
    if len(dims) == 1:
        return True
    if len(dims) == 2:  # the innermost arrays: one C-level pass, no Python frame each
        return list(map(len, node)).count(dims[1]) == dims[0]
    rest = dims[1:]
    return all(_rectangular(child, rest) for child in node)


def _layout(raw: bytes) -> tuple[list[Span], list[Span]] | None:
    """Where the members of "inputs" and the other top-level members are in a valid body."""
    top = _members(raw, 0, top=True)
    if top is None or top[1] is None:
        return None
    return top[1], top[0]


def _members(raw: bytes, pos: int, *, top: bool
             ) -> tuple[list[Span], list[Span] | None, int] | None:
    """The members of the object that opens at pos (at the top, those of "inputs" apart),
    and where the object ends."""
    m = _OPEN.match(raw, pos)
    if m is None:
        return None
    pos = m.end()
    spans: list[Span] = []
    inputs: list[Span] | None = None
    if raw[pos:pos + 1] == b"}":
        return spans, inputs, pos + 1
    while True:
        m = _KEY.match(raw, pos)
        if m is None:
            return None
        token = m.group(1)
        key = orjson.loads(token) if b"\\" in token else token[1:-1].decode()
        start = m.end()
        if top and key == "inputs":
            inner = _members(raw, start, top=False) if raw[start] == ord("{") else None
            if inner is None or inputs is not None:
                return None  # not an object, or "inputs" twice (orjson keeps the last one)
            inputs, end = inner[0], inner[2]
        else:
            end = _value_end(raw, start, tensor=not top)
            if end <= start:
                return None
            spans.append((key, start, end))
        m = _AFTER.match(raw, end)
        if m is None:
            return None
        if m.group(1) == b"}":
            return spans, inputs, m.end()
        pos = m.end()


def _value_end(raw: bytes, pos: int, tensor: bool) -> int:
    """Where the value at pos ends; -1 if it is not one the scan can follow."""
    first = raw[pos]
    if first == ord("[") and tensor:
        # A numeric array holds no '"' and no '}': it ends at the last ']' before either.
        quote = raw.find(b'"', pos)
        stop = len(raw) if quote < 0 else quote
        brace = raw.find(b"}", pos, stop)
        return raw.rfind(b"]", pos, stop if brace < 0 else brace) + 1
    if first in b"[{":
        depth = 0
        for m in _TOKENS.finditer(raw, pos):
            char = raw[m.start()]
            if char != ord('"'):
                depth += 1 if char in b"[{" else -1
                if depth == 0:
                    return m.end()
        return -1
    scalar = _SCALAR.match(raw, pos)
    return -1 if scalar is None else scalar.end()
