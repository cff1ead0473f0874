"""Base models: upload with validation, read, list, delete."""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select

from app.db.tables import ModelRow, SessionRow, new_id
from app.errors import Conflict, NotFound, PayloadTooLarge
from app.runtime.signatures import signatures_as_json, signatures_from_json
from app.services.fleet import Fleet, LoadedModel
from app.services.pages import Page, paginate


def create(fleet: Fleet, *, name: str, data: bytes) -> ModelRow:
    """Validate a .tflite in the probe child, store it, then record it."""
    limit = fleet.settings.max_model_bytes
    if len(data) > limit:
        raise PayloadTooLarge(f"model file is {len(data)} bytes; the limit is {limit}")
    signatures = fleet.validator.validate(data)
    model_id = new_id("mdl")
    key = f"models/{model_id}.tflite"
    fleet.store.put(key, data)  # blob first, row second
    try:
        with fleet.db.begin() as db:
            row = ModelRow(id=model_id, name=name, sha256=hashlib.sha256(data).hexdigest(),
                           size_bytes=len(data), signatures=signatures_as_json(signatures),
                           blob_key=key)
            db.add(row)
    except BaseException:
        fleet.store.delete(key)
        raise
    with fleet.models_lock:
        fleet.models[model_id] = LoadedModel(model_id, data, signatures)
    return row


def get(fleet: Fleet, *, model_id: str) -> ModelRow:
    """A model row, or 404."""
    with fleet.db.begin() as db:
        row = db.get(ModelRow, model_id)
    if row is None:
        raise NotFound(f"model '{model_id}' not found")
    return row


def get_all(fleet: Fleet, *, limit: int, cursor: str | None) -> Page[ModelRow]:
    """Models, newest first."""
    with fleet.db.begin() as db:
        return paginate(db, select(ModelRow), ModelRow.id, limit=limit, cursor=cursor)


def read_file(fleet: Fleet, *, model_id: str) -> bytes:
    """The exact bytes uploaded."""
    return load(fleet, model_id=model_id).data


def load(fleet: Fleet, *, model_id: str) -> LoadedModel:
    """Bytes and signatures, cached in memory for every session on the model."""
    cached = fleet.models.get(model_id)
    if cached is not None:
        return cached
    row = get(fleet, model_id=model_id)
    loaded = LoadedModel(model_id, fleet.store.get(row.blob_key),
                         signatures_from_json(row.signatures))
    with fleet.models_lock:
        return fleet.models.setdefault(model_id, loaded)


def delete(fleet: Fleet, *, model_id: str) -> None:
    """Delete a model no session uses; its checkpoints stay downloadable."""
    with fleet.db.begin() as db:
        row = db.get(ModelRow, model_id)
        if row is None:
            raise NotFound(f"model '{model_id}' not found")
        in_use = db.scalar(select(func.count()).where(SessionRow.model_id == model_id))
        if in_use:
            raise Conflict(f"model '{model_id}' is used by {in_use} session(s); delete them first")
        db.delete(row)
        key = row.blob_key
    with fleet.models_lock:
        fleet.models.pop(model_id, None)
    fleet.store.delete(key)
