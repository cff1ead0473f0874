"""A user's datasets: .npz archives of training examples, stored under the user's prefix."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from sqlalchemy import select

from app.db.tables import DatasetRow, new_id
from app.errors import InvalidInput, NotFound, PayloadTooLarge
from app.runtime.datasets import check_against, describe, read_npz
from app.runtime.signatures import numpy_dtype
from app.services import models
from app.services.fleet import Fleet
from app.services.pages import Page, paginate
from app.store.blobs import BlobNotFound


def create(fleet: Fleet, *, user_id: str, name: str, data: bytes,
           model_id: str | None = None) -> DatasetRow:
    """Check and store an .npz; with model_id, also check it against the train signature."""
    limit = fleet.settings.max_dataset_bytes
    if len(data) > limit:
        raise PayloadTooLarge(f"dataset file is {len(data)} bytes; the limit is {limit}")
    num, meta = describe(read_npz(data, max_bytes=limit))
    if model_id:
        check_against(models.load(fleet, model_id=model_id).signatures["train"], meta)
    dataset_id = new_id("ds")
    key = f"users/{user_id}/datasets/{dataset_id}.npz"
    fleet.store.put(key, data)
    try:
        with fleet.db.begin() as db:
            row = DatasetRow(id=dataset_id, user_id=user_id, name=name, num_examples=num,
                             arrays=meta, sha256=hashlib.sha256(data).hexdigest(),
                             size_bytes=len(data), blob_key=key)
            db.add(row)
    except BaseException:
        fleet.store.delete(key)
        raise
    return row


def get(fleet: Fleet, *, dataset_id: str) -> DatasetRow:
    """A dataset row, or 404."""
    with fleet.db.begin() as db:
        row = db.get(DatasetRow, dataset_id)
    if row is None:
        raise NotFound(f"dataset '{dataset_id}' not found")
    return row


def get_all(fleet: Fleet, *, user_id: str, limit: int, cursor: str | None) -> Page[DatasetRow]:
    """A user's datasets, newest first."""
    with fleet.db.begin() as db:
        return paginate(db, select(DatasetRow).where(DatasetRow.user_id == user_id),
                        DatasetRow.id, limit=limit, cursor=cursor)


def load_arrays(fleet: Fleet, *, row: DatasetRow, model_id: str) -> dict[str, np.ndarray[Any, Any]]:
    """The arrays, checked against the model's train signature and cast to its dtypes."""
    spec = models.load(fleet, model_id=model_id).signatures["train"]
    check_against(spec, row.arrays)
    try:
        data = fleet.store.get(row.blob_key)
    except BlobNotFound:
        raise NotFound(f"the file of dataset '{row.id}' is missing from the blob store "
                       f"(key {row.blob_key})") from None
    arrays = read_npz(data)
    out = {}
    for name, t in spec.inputs.items():
        target, arr = numpy_dtype(t.dtype), arrays[name]
        if target.kind in "iu" and arr.dtype.kind in "iu" and arr.size:
            info = np.iinfo(target)
            if arr.min() < info.min or arr.max() > info.max:
                raise InvalidInput(f"array '{name}' holds values outside {t.dtype}")
        out[name] = np.ascontiguousarray(arr, dtype=target)
    return out


def delete(fleet: Fleet, *, dataset_id: str) -> None:
    """Delete a dataset (jobs that used it keep their results)."""
    with fleet.db.begin() as db:
        row = db.get(DatasetRow, dataset_id)
        if row is None:
            raise NotFound(f"dataset '{dataset_id}' not found")
        db.delete(row)
    fleet.store.delete(row.blob_key)
