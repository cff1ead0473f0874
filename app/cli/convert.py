"""`fleetlite models convert`: a Keras file in, a trainable model on the server out."""

from __future__ import annotations

import json
from typing import Annotated, Any

import httpx
import typer

from app.cli.api import fail
from app.cli.output import fields, show
from app.cli.resources import ExistingFile, render_model
from app.cli.state import api

# Loading and converting in the server's child takes seconds to minutes (MobileNetV2).
CONVERT_TIMEOUT = httpx.Timeout(900.0, connect=5.0)


def merged_options(options: str | None, *, trainable: str | None, loss: str | None,
                   from_logits: bool | None, optimizer: str | None, lr: float | None,
                   momentum: float | None, label: str | None) -> dict[str, Any]:
    """--options JSON with each flag given over it (a comma-separated --trainable is a list
    of layer names)."""
    try:
        merged: Any = json.loads(options) if options else {}
    except ValueError as exc:
        fail(f"--options: not valid JSON ({exc})")
    if not isinstance(merged, dict):
        fail("--options: must be a JSON object")
    if trainable is not None:
        merged["trainable"] = trainable if trainable == "all" or trainable.startswith(
            "last:") else [n.strip() for n in trainable.split(",") if n.strip()]
    if loss is not None:
        merged["loss"] = loss
    if from_logits is not None:
        merged["from_logits"] = from_logits
    opt = dict(merged.get("optimizer") or {})
    if optimizer is not None and opt.get("name") != optimizer:
        opt = {"name": optimizer}
    for key, value in (("learning_rate", lr), ("momentum", momentum)):
        if value is not None:
            opt[key] = value
    if opt:
        opt.setdefault("name", "sgd")
        merged["optimizer"] = opt
    if label is not None:
        merged["label"] = {**dict(merged.get("label") or {}), "name": label}
    return merged


def _render(m: dict[str, Any]) -> None:
    render_model(m)
    origin = m.get("converted_from") or {}
    opts = origin.get("options", {})
    fields([("converted from", f"{origin.get('format', '?')} sha256 "
                               f"{str(origin.get('sha256', ''))[:16]}"),
            ("trainable", ", ".join(origin.get("trainable_layers", []))),
            ("loss", opts.get("loss", "")),
            ("optimizer", json.dumps(opts.get("optimizer", {})))])


def convert(
    ctx: typer.Context, file: ExistingFile,
    name: Annotated[str | None, typer.Option(help="Default: the file name.")] = None,
    trainable: Annotated[str | None, typer.Option(
        help='"all", "last:N", or layer names separated by commas; the others are frozen.')]
    = None,
    loss: Annotated[str | None, typer.Option(
        help="categorical_crossentropy, sparse_categorical_crossentropy, "
             "binary_crossentropy or mse.")] = None,
    from_logits: Annotated[bool | None, typer.Option(
        "--from-logits/--from-probabilities", show_default=False,
        help="Whether the model's output is logits.")] = None,
    optimizer: Annotated[str | None, typer.Option(help="sgd or adam.")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Learning rate.")] = None,
    momentum: Annotated[float | None, typer.Option(help="SGD momentum.")] = None,
    label: Annotated[str | None, typer.Option(help="Name of the train signature's label "
                                                   "input (default: label).")] = None,
    options: Annotated[str | None, typer.Option(
        help="Every option as JSON (see docs/api.md); the flags above go over it.")] = None,
) -> None:
    """Convert a Keras .keras or .h5 file into a trainable model on the server."""
    body = merged_options(options, trainable=trainable, loss=loss, from_logits=from_logits,
                          optimizer=optimizer, lr=lr, momentum=momentum, label=label)
    with file.open("rb") as fh:
        model = api(ctx).json("POST", "/v1/models/convert", files={"file": (file.name, fh)},
                              data={"name": name or file.stem, "options": json.dumps(body)},
                              timeout=CONVERT_TIMEOUT)
    show(ctx, model, _render)
