"""Base models: upload with validation, read, list, delete."""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select

from app.db.tables import ModelRow, SessionRow, new_id
from app.errors import Conflict, PayloadTooLarge
from app.runtime.signatures import signatures_as_json, signatures_from_json
from app.services import rows
from app.services.context import Context, LoadedModel
from app.services.pages import Page, paginate


def create(ctx: Context, *, name: str, data: bytes) -> ModelRow:
    """Validate a .tflite in the probe child, store it, then record it."""
    limit = ctx.settings.max_model_bytes
    if len(data) > limit:
        raise PayloadTooLarge(f"model file is {len(data)} bytes; the limit is {limit}")
    signatures = ctx.validator.validate(data)
    model_id = new_id("mdl")
    key = f"models/{model_id}.tflite"
    row = ModelRow(id=model_id, name=name, sha256=hashlib.sha256(data).hexdigest(),
                   size_bytes=len(data), signatures=signatures_as_json(signatures), blob_key=key)
    rows.add_with_blob(ctx, key, data, row)
    with ctx.models_lock:
        ctx.models[model_id] = LoadedModel(model_id, data, signatures)
    return row


def get(ctx: Context, *, model_id: str) -> ModelRow:
    """A model row, or 404."""
    return rows.get(ctx, ModelRow, model_id, "model")


def get_all(ctx: Context, *, limit: int, cursor: str | None) -> Page[ModelRow]:
    """Models, newest first."""
    with ctx.db.begin() as db:
        return paginate(db, select(ModelRow), ModelRow.id, limit=limit, cursor=cursor)


def read_file(ctx: Context, *, model_id: str) -> bytes:
    """The exact bytes uploaded."""
    return load(ctx, model_id=model_id).data


def load(ctx: Context, *, model_id: str) -> LoadedModel:
    """Bytes and signatures, cached in memory for every session on the model."""
    cached = ctx.models.get(model_id)
    if cached is not None:
        return cached
    row = get(ctx, model_id=model_id)
    loaded = LoadedModel(model_id, ctx.store.get(row.blob_key),
                         signatures_from_json(row.signatures))
    with ctx.models_lock:
        return ctx.models.setdefault(model_id, loaded)


def delete(ctx: Context, *, model_id: str) -> None:
    """Delete a model no session uses; its checkpoints stay downloadable."""
    with ctx.db.begin() as db:
        row = rows.get_in(db, ModelRow, model_id, "model")
        in_use = db.scalar(select(func.count()).where(SessionRow.model_id == model_id))
        if in_use:
            raise Conflict(f"model '{model_id}' is used by {in_use} session(s); delete them first")
        db.delete(row)
        key = row.blob_key
    with ctx.models_lock:
        ctx.models.pop(model_id, None)
    ctx.store.delete(key)
