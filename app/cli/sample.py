"""`datasets sample`: the README's data, written locally (no server needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from app.cli.api import fail
from app.cli.output import console, show, size
from app.demo import sample_digits

SAMPLES = ("digits",)
NEEDS = ("scikit-learn is needed for the digits (it bundles them; nothing is downloaded): "
         "pip install 'fleetlite[demo]', or in this repository .venv/bin/pip install "
         "scikit-learn")


def datasets_sample(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="digits: scikit-learn's digits at 28x28.")],
    directory: Annotated[Path, typer.Argument(file_okay=False, help="Where to write them.")],
) -> None:
    """Write a sample dataset: `digits` writes DIRECTORY/digits.npz (x [n,28,28], y one-hot
    [n,10], group: 20 writer-like ids for the natural partition) and digits_test.npz (a fifth
    of the digits, held out), as `make demo-fleet` splits them. Needs scikit-learn."""
    if name not in SAMPLES:
        fail(f"unknown sample {name!r}; choose one of: {', '.join(SAMPLES)}")
    try:
        train, test = sample_digits()
    except ImportError:
        fail(NEEDS)
    written: list[dict[str, Any]] = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for file, arrays in (("digits.npz", train), ("digits_test.npz", test)):
            path = directory / file
            np.savez(path, **arrays)  # type: ignore[arg-type]
            written.append({"path": str(path), "examples": len(arrays["x"]),
                            "arrays": sorted(arrays), "size_bytes": path.stat().st_size})
    except OSError as exc:
        fail(f"cannot write the sample into {directory}: {exc}")
    def render(data: dict[str, Any]) -> None:
        for f in data["files"]:
            console().print(f"wrote {f['path']}: {f['examples']} examples, arrays "
                            f"{', '.join(f['arrays'])} ({size(f['size_bytes'])})", markup=False)
    show(ctx, {"files": written}, render)
