"""Bring your own model: a Keras file converted in a child process, then uploaded like any
.tflite (the same validation, the same 201/200/422)."""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

from sqlalchemy import select

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
    sha256 = hashlib.sha256(data).hexdigest()
    wanted = options.model_dump(mode="json")
    # One conversion at a time: each child holds TensorFlow and a model in memory, and the
    # look-up below must see the model an identical conversion just made.
    with _CONVERSIONS:
        existing = _converted(ctx, name=name, sha256=sha256, options=wanted)
        if existing is not None:
            return existing, False
        try:
            keras_format(data)  # refuse a file that is no Keras model before starting a child
            result = convert_keras(data, options, work_dir=ctx.settings.work_path)
        except KerasRefused as exc:
            raise InvalidModel(str(exc)) from None
        origin = {"sha256": sha256, "format": result.format, "options": wanted,
                  "trainable_layers": result.trainable_layers}
        return models.upload(ctx, name=name, data=result.tflite, converted_from=origin)


_CONVERSIONS = threading.Lock()


def _converted(ctx: Context, *, name: str, sha256: str,
               options: dict[str, Any]) -> ModelRow | None:
    """The model this name, file and options made before: the converter's flatbuffer is not
    byte-for-byte stable (it serializes op attributes in map order), so the upload's own
    look-up by the .tflite's sha256 would not find it."""
    with ctx.db.begin() as db:
        rows = db.scalars(select(ModelRow).where(ModelRow.name == name,
                                                 ModelRow.converted_from.is_not(None))
                          .order_by(ModelRow.id)).all()
    for row in rows:
        origin = row.converted_from or {}
        if origin.get("sha256") == sha256 and origin.get("options") == options:
            return row
    return None
