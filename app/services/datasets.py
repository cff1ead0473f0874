"""A user's datasets: .npz archives of training examples, stored under the user's prefix."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from sqlalchemy import select

from app.db.tables import DatasetRow, new_id
from app.errors import InvalidInput, NotFound, PayloadTooLarge
from app.runtime.datasets import check_against, describe, read_npz
from app.runtime.signatures import SignatureSpec, numpy_dtype
from app.services import models, rows, usage
from app.services.context import Context
from app.services.pages import Page, paginate
from app.store.blobs import BlobNotFound


def create(ctx: Context, *, user_id: str, name: str, data: bytes,
           model_id: str | None = None) -> DatasetRow:
    """Check and store an .npz; with model_id, also check it against the train signature."""
    limit = ctx.settings.max_dataset_bytes
    if len(data) > limit:
        raise PayloadTooLarge(f"dataset file is {len(data)} bytes; the limit is {limit}")
    num, meta = describe(read_npz(data, max_bytes=limit,
                                  max_arrays=ctx.settings.max_dataset_arrays))
    if model_id:
        check_against(models.load(ctx, model_id=model_id).signatures["train"], meta)
    dataset_id = new_id("ds")
    key = f"users/{user_id}/datasets/{dataset_id}.npz"
    row = DatasetRow(id=dataset_id, user_id=user_id, name=name, num_examples=num, arrays=meta,
                     sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data), blob_key=key)
    return rows.add_with_blob(ctx, key, data, row)


def get(ctx: Context, *, dataset_id: str) -> DatasetRow:
    """A dataset row, or 404."""
    return rows.get(ctx, DatasetRow, dataset_id, "dataset")


def get_all(ctx: Context, *, user_id: str, limit: int, cursor: str | None) -> Page[DatasetRow]:
    """A user's datasets, newest first."""
    with ctx.db.begin() as db:
        return paginate(db, select(DatasetRow).where(DatasetRow.user_id == user_id),
                        DatasetRow.id, limit=limit, cursor=cursor)


def load_arrays(ctx: Context, *, row: DatasetRow, model_id: str) -> dict[str, np.ndarray[Any, Any]]:
    """The arrays, checked against the model's train signature and cast to its dtypes."""
    spec = models.load(ctx, model_id=model_id).signatures["train"]
    check_against(spec, row.arrays)
    return cast_to(spec, read_all(ctx, row=row))


def read_all(ctx: Context, *, row: DatasetRow) -> dict[str, np.ndarray[Any, Any]]:
    """Every array of the dataset as stored (a fleet's extra arrays included)."""
    try:
        data = ctx.store.get(row.blob_key)
    except BlobNotFound:
        raise NotFound(f"the file of dataset '{row.id}' is missing from the blob store "
                       f"(key {row.blob_key})") from None
    return read_npz(data)


def cast_to(spec: SignatureSpec, arrays: dict[str, np.ndarray[Any, Any]]
            ) -> dict[str, np.ndarray[Any, Any]]:
    """The signature's inputs among the arrays, in its dtypes (422 if an int does not fit)."""
    out = {}
    for name, t in spec.inputs.items():
        target, arr = numpy_dtype(t.dtype), arrays[name]
        if target.kind in "iu" and arr.dtype.kind in "iu" and arr.size:
            info = np.iinfo(target)
            if arr.min() < info.min or arr.max() > info.max:
                raise InvalidInput(f"array '{name}' holds values outside {t.dtype}")
        out[name] = np.ascontiguousarray(arr, dtype=target)
    return out


def delete(ctx: Context, *, dataset_id: str) -> None:
    """Delete a dataset no active fleet or job uses (409 naming it); ended ones keep their
    results, which do not read it again."""
    with ctx.db.begin() as db:
        row = rows.get_in(db, DatasetRow, dataset_id, "dataset")
        usage.check_dataset(db, dataset_id)
        db.delete(row)
    ctx.store.delete(row.blob_key)
