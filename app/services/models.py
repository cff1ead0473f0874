"""Base models: upload with validation, read, list, delete."""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from sqlalchemy import func, select, update

from app.db.tables import ModelRow, SessionRow, new_id
from app.errors import Conflict, PayloadTooLarge
from app.runtime.interpreter import LiteSession
from app.runtime.signatures import signatures_as_json, signatures_from_json
from app.services import rows, usage
from app.services.context import Context, LoadedModel
from app.services.pages import Page, paginate


def create(ctx: Context, *, name: str, data: bytes,
           converted_from: dict[str, Any] | None = None) -> ModelRow:
    """Validate a .tflite in the probe child, store it, then record it."""
    limit = ctx.settings.max_model_bytes
    if len(data) > limit:
        raise PayloadTooLarge(f"model file is {len(data)} bytes; the limit is {limit}")
    probed = ctx.validator.probe(data)
    signatures = probed.signatures
    model_id = new_id("mdl")
    key = f"models/{model_id}.tflite"
    row = ModelRow(id=model_id, name=name, sha256=hashlib.sha256(data).hexdigest(),
                   size_bytes=len(data), signatures=signatures_as_json(signatures), blob_key=key,
                   train_ms_per_example=probed.train_ms_per_example,
                   converted_from=converted_from)
    rows.add_with_blob(ctx, key, data, row)
    with ctx.models_lock:
        ctx.models[model_id] = LoadedModel(model_id, data, signatures)
    return row


_UPLOADS = threading.Lock()  # one upload's look-up and insert at a time: one file, one model


def upload(ctx: Context, *, name: str, data: bytes,
           converted_from: dict[str, Any] | None = None) -> tuple[ModelRow, bool]:
    """The model of these bytes under this name: the one that exists (False), or a new one
    (True). A different name or different bytes make a new model."""
    sha256 = hashlib.sha256(data).hexdigest()
    with _UPLOADS:  # uploads are rare; their validation runs one at a time anyway
        with ctx.db.begin() as db:
            existing = db.scalar(select(ModelRow).where(
                ModelRow.name == name, ModelRow.sha256 == sha256).order_by(ModelRow.id).limit(1))
        if existing is not None:
            return existing, False
        return create(ctx, name=name, data=data, converted_from=converted_from), True


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
        usage.check_model(db, model_id)
        in_use = db.scalar(select(func.count()).where(SessionRow.model_id == model_id))
        if in_use:
            raise Conflict(f"model '{model_id}' is used by {in_use} session(s); delete them first")
        db.delete(row)
        key = row.blob_key
    with ctx.models_lock:
        ctx.models.pop(model_id, None)
    ctx.store.delete(key)


def initial_weights(ctx: Context, *, model_id: str) -> bytes:
    """The model's own initial weights, as its save signature writes them (cached)."""
    cached = ctx.initial_weights.get(model_id)
    if cached is not None:
        return cached
    model = load(ctx, model_id=model_id)
    lite = LiteSession(model.data, ctx.settings.interpreter_threads)
    path = ctx.settings.work_path / f"initial-{new_id('tmp')}.ckpt"
    try:
        lite.save(path)
        data = path.read_bytes()
    finally:
        path.unlink(missing_ok=True)
    with ctx.models_lock:
        return ctx.initial_weights.setdefault(model_id, data)


def train_ms_per_example(ctx: Context, *, model_id: str) -> float | None:
    """The train signature's time per example on this server: measured at upload (models
    uploaded before this was recorded are measured once now, and it is stored)."""
    row = get(ctx, model_id=model_id)
    if row.train_ms_per_example is not None:
        return row.train_ms_per_example
    ms = ctx.validator.probe(load(ctx, model_id=model_id).data).train_ms_per_example
    with ctx.db.begin() as db:
        db.execute(update(ModelRow).where(ModelRow.id == model_id,
                                          ModelRow.train_ms_per_example.is_(None))
                   .values(train_ms_per_example=ms))
    return get(ctx, model_id=model_id).train_ms_per_example
