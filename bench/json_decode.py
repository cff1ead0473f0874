"""The JSON route's decoding alone: the codec (orjson.loads + decode_inputs) against
app/runtime/jsontensors.decode_body, on the same body in the same run.

``python -m bench.json_decode [--model mlp|cnn] [--rounds N]``: a batch of 32 as a client
sends it (orjson with OPT_SERIALIZE_NUMPY: float32 values in their shortest form, about
270 KB for the MLP), both decoders timed in alternating rounds; prints the median time per
call of each, the ratio, and the gen-0 garbage collections per call.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import orjson

from app.runtime.codec import DEFAULT_LIMITS, decode_inputs, parse_json
from app.runtime.jsontensors import decode_body
from app.runtime.signatures import SignatureSpec, TensorSpec
from bench.clients import batches

SPECS = {
    "mlp": SignatureSpec({"x": TensorSpec("x", (-1, 28, 28), "float32"),
                          "y": TensorSpec("y", (-1, 10), "float32")}, {}),
    "cnn": SignatureSpec({"image": TensorSpec("image", (-1, 64, 64, 3), "float32"),
                          "label": TensorSpec("label", (-1, 10), "float32")}, {}),
}


def current(raw: bytes, spec: SignatureSpec) -> Any:
    """Today's path: orjson.loads (parse_json), then decode_inputs."""
    body, bools = parse_json(raw)
    return decode_inputs(spec, body, "train", DEFAULT_LIMITS, may_hold_bools=bools)


def new(raw: bytes, spec: SignatureSpec) -> Any:
    """simdjson into numpy buffers (decode_body)."""
    return decode_body(raw, spec, "train", DEFAULT_LIMITS)[0]


def per_call(fn: Callable[[bytes, SignatureSpec], Any], raw: bytes, spec: SignatureSpec,
             calls: int) -> float:
    """Seconds per call over `calls` calls."""
    start = time.perf_counter()
    for _ in range(calls):
        fn(raw, spec)
    return (time.perf_counter() - start) / calls


def collections(fn: Callable[[bytes, SignatureSpec], Any], raw: bytes, spec: SignatureSpec,
                calls: int) -> float:
    """Gen-0 garbage collections per call."""
    gc.collect()
    before = gc.get_stats()[0]["collections"]
    for _ in range(calls):
        fn(raw, spec)
    return (gc.get_stats()[0]["collections"] - before) / calls


def main() -> None:
    """Print both decoders' time per call and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(SPECS), default="mlp")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    spec = SPECS[args.model]
    raw = orjson.dumps({"inputs": batches(args.model)[0]}, option=orjson.OPT_SERIALIZE_NUMPY)
    want, got = current(raw, spec), new(raw, spec)
    assert all(want[n].tobytes() == got[n].tobytes() for n in spec.inputs), "answers differ"
    calls = max(3, int(0.2 / per_call(current, raw, spec, 3)))  # about 0.2 s a round
    times: dict[str, list[float]] = {"current": [], "new": []}
    for _ in range(args.rounds):
        times["current"].append(per_call(current, raw, spec, calls))
        times["new"].append(per_call(new, raw, spec, calls))
    cur, fast = (statistics.median(times[k]) * 1000 for k in ("current", "new"))
    print(f"{args.model} batch of 32, body {len(raw) / 1024:.0f} KB, {args.rounds} rounds "
          f"of {calls} calls, median per call")
    print(f"  current (orjson.loads + decode_inputs): {cur:8.3f} ms   gen-0 collections "
          f"per call {collections(current, raw, spec, calls):.2f}")
    print(f"  new     (jsontensors.decode_body):      {fast:8.3f} ms   gen-0 collections "
          f"per call {collections(new, raw, spec, calls):.2f}")
    print(f"  ratio current / new: {cur / fast:.2f}x")


if __name__ == "__main__":
    main()
