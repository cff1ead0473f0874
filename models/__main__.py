"""Command line: `python -m models list` and `python -m models build NAME OUT.tflite`."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from . import NAMES, SIGNATURES, build, description


def _describe(model: bytes) -> list[str]:
    """One line per signature: inputs and outputs as name:dtype[shape]."""
    import numpy as np
    import tensorflow as tf

    with warnings.catch_warnings():
        # tf.lite.Interpreter's deprecation notice; TF 2.19 is pinned on purpose.
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_content=model)

    def fmt(details: dict) -> str:
        parts = []
        for name, d in sorted(details.items()):
            dtype = "string" if d["dtype"] is np.bytes_ else np.dtype(d["dtype"]).name
            parts.append(f"{name}:{dtype}{d['shape_signature'].tolist()}")
        return ", ".join(parts)

    lines = []
    for sig in interpreter.get_signature_list():
        runner = interpreter.get_signature_runner(sig)
        inputs, outputs = runner.get_input_details(), runner.get_output_details()
        lines.append(f"  {sig}({fmt(inputs)}) -> {fmt(outputs)}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m models", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print the model names with a description")
    build_cmd = commands.add_parser("build", help="write a model's .tflite file")
    build_cmd.add_argument("name", choices=NAMES)
    build_cmd.add_argument("out", type=Path, help="output .tflite path")
    build_cmd.add_argument("--fixed-batch", type=int, metavar="N", help="fixed batch size")
    build_cmd.add_argument(
        "--omit",
        nargs="+",
        default=[],
        choices=SIGNATURES,
        metavar="SIG",
        help=f"signatures to leave out ({', '.join(SIGNATURES)})",
    )
    build_cmd.add_argument("--seed", type=int, default=0, help="weight initialization seed")
    args = parser.parse_args(argv)

    if args.command == "list":
        for name in NAMES:
            print(f"{name:<6} {description(name)}")
        return 0

    from app.quiet import filtered_stderr  # TensorFlow's import and converter noise

    try:
        with filtered_stderr():
            model = build(args.name, omit=args.omit, fixed_batch=args.fixed_batch,
                          seed=args.seed)
    except ValueError as exc:
        build_cmd.error(str(exc))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_bytes(model)
    # A reader (e.g. a running service watching the path) never sees a half-written file.
    os.replace(tmp, args.out)
    print(f"{args.name}: wrote {args.out} ({len(model)} bytes)")
    print("signatures:")
    with filtered_stderr():  # the first interpreter's Flex delegate lines
        lines = _describe(model)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
