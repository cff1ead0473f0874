"""Bring your own model: a Keras file converted in a child process, then uploaded like any
.tflite (the same validation, the same 201/200/422)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from app.db.tables import ModelRow
from app.errors import InvalidInput, InvalidModel, PayloadTooLarge
from app.runtime.keras_child import KerasRefused, convert_keras, keras_format
from app.runtime.keras_options import ConvertOptions, OptionsError, parse_options
from app.services import models
from app.services.context import Context


def options_from_json(text: str | None) -> ConvertOptions:
    """The conversion options from the form's JSON text, or a 422 naming the option."""
    try:
        raw: Any = json.loads(text) if text else {}
    except ValueError as exc:
        raise InvalidInput(f"options: not valid JSON ({exc})") from None
    try:
        return parse_options(raw)
    except OptionsError as exc:
        raise InvalidInput(str(exc)) from None


def convert(ctx: Context, *, name: str, data: bytes,
            options: ConvertOptions) -> tuple[ModelRow, bool]:
    """Convert the Keras file and upload the result; (model, created). Nothing is kept
    when the file, the options or the converted model are refused."""
    limit = ctx.settings.max_model_bytes
    if len(data) > limit:
        raise PayloadTooLarge(f"Keras file is {len(data)} bytes; the limit is {limit}")
    try:
        keras_format(data)  # refuse a file that is no Keras model before starting a child
        result = convert_keras(data, options, work_dir=ctx.settings.work_path)
    except KerasRefused as exc:
        raise InvalidModel(str(exc)) from None
    origin = {"sha256": hashlib.sha256(data).hexdigest(), "format": result.format,
              "options": options.model_dump(mode="json"),
              "trainable_layers": result.trainable_layers}
    return models.upload(ctx, name=name, data=result.tflite, converted_from=origin)
