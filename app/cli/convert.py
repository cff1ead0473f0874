"""`fleetlite models convert`: a Keras file in, a trainable model on the server out."""

from __future__ import annotations

import typer


def convert(ctx: typer.Context) -> None:
    """Convert a Keras model into a trainable .tflite on the server (not yet built)."""
    raise typer.Exit(2)
