"""App bundles: a zip an app ships, of a model and the weights of a session, of a fleet's
final global model, or of one device's personalized model, with a manifest and snippets.

The fleet's rows are read here directly (FleetRow, FleetClientRow, CheckpointRow), not
through the fleet's services, so that this module depends on what a finished fleet has
written and on nothing of how it ran.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from anyio import to_thread

from app.db.tables import CheckpointRow, DatasetRow, FleetClientRow, FleetRow
from app.errors import Conflict, NotFound
from app.runtime.datasets import LABEL_NAMES, read_npz
from app.runtime.report_snippets import kotlin, swift
from app.runtime.session import LiveSession
from app.services import checkpoints, inference, models, rows
from app.services.context import Context
from app.services.keyring import Principal

ACTIVE = ("queued", "running", "paused")  # a fleet in these states has no final model yet
FORMAT = 1
_EPOCH = (1980, 1, 1, 0, 0, 0)  # zip entries' time: the bundle's bytes depend on content only


@dataclass(frozen=True)
class Bundle:
    """A bundle's zip, the name to save it under, and its sha256."""

    filename: str
    data: bytes
    sha256: str


def current_checkpoint(ctx: Context, live: LiveSession) -> CheckpointRow:
    """In the session's strand: the checkpoint of its current weights, saved now through
    the session's save path if it has steps no checkpoint holds, else its head."""
    live.check_present()
    if live.dirty or live.head_checkpoint_id is None:
        return checkpoints.save(ctx, live, kind="manual", label="app bundle")
    return checkpoints.get(ctx, checkpoint_id=live.head_checkpoint_id)


async def of_session(ctx: Context, who: Principal, session_id: str,
                     dataset_id: str | None = None) -> Bundle:
    """The bundle of a session's current weights; the class names of one of the caller's
    datasets, if given and it carries them."""
    names = None
    if dataset_id is not None:
        names = await to_thread.run_sync(partial(dataset_label_names, ctx, who, dataset_id))
    row = await inference.on_session(
        ctx, who, session_id, lambda s: partial(current_checkpoint, ctx, s), inline=False)
    source = {"kind": "session", "session_id": session_id, "step": row.step,
              "checkpoint_id": row.id}
    return await to_thread.run_sync(partial(
        pack, ctx, checkpoint=row, source=source, label_names=names,
        filename=f"{session_id}-step{row.step}.zip"))


def dataset_label_names(ctx: Context, who: Principal, dataset_id: str) -> list[str] | None:
    """The class names a dataset of the caller carries (None if it has none); 404 for
    another user's dataset, as for one that does not exist."""
    ds = rows.get(ctx, DatasetRow, dataset_id, "dataset")
    if not who.may_see(ds.user_id):
        raise NotFound(f"dataset '{dataset_id}' not found")
    return _names_of(ctx, ds)


def fleet_row(ctx: Context, *, fleet_id: str) -> FleetRow:
    """A fleet row, or 404."""
    return rows.get(ctx, FleetRow, fleet_id, "fleet")


def _finished(row: FleetRow) -> None:
    if row.status in ACTIVE:
        raise Conflict(f"fleet '{row.id}' is {row.status}: its bundles are ready when it ends")


def of_fleet(ctx: Context, row: FleetRow) -> Bundle:
    """The bundle of a finished fleet's final global model (409 while it runs)."""
    _finished(row)
    if not row.global_checkpoint_ids:
        raise Conflict(f"fleet '{row.id}' ended ({row.status}) before any round committed a "
                       "global model")
    ckpt = checkpoints.get(ctx, checkpoint_id=row.global_checkpoint_ids[-1])
    source = {"kind": "fleet", "fleet_id": row.id, "status": row.status,
              "round": ckpt.round, "client_id": None, "checkpoint_id": ckpt.id}
    return pack(ctx, checkpoint=ckpt, source=source, label_names=_label_names(ctx, row),
                filename=f"{row.id}-round{ckpt.round}.zip")


def of_client(ctx: Context, row: FleetRow, *, client_id: int) -> Bundle:
    """The bundle of one device's personalized model in a finished fleet."""
    _finished(row)
    with ctx.db.begin() as db:
        client = db.get(FleetClientRow, (row.id, client_id))
    if client is None or client.checkpoint_id is None:
        raise NotFound(f"client {client_id} of fleet '{row.id}' has no model of its own: "
                       f"it never took part (clients are 0..{row.num_clients - 1})")
    ckpt = checkpoints.get(ctx, checkpoint_id=client.checkpoint_id)
    source = {"kind": "fleet_client", "fleet_id": row.id, "status": row.status,
              "round": ckpt.round, "client_id": client_id, "session_id": client.session_id,
              "checkpoint_id": ckpt.id}
    return pack(ctx, checkpoint=ckpt, source=source, label_names=_label_names(ctx, row),
                filename=f"{row.id}-client{client_id}.zip")


def label_names(arrays: dict[str, np.ndarray[Any, Any]]) -> list[str] | None:
    """The class names a dataset carries in an array named `label_names`, if any."""
    names = arrays.get(LABEL_NAMES)
    if names is None:
        return None
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
            for v in np.asarray(names).reshape(-1).tolist()]


def _label_names(ctx: Context, row: FleetRow) -> list[str] | None:
    dataset_id = (row.spec or {}).get("dataset_id")
    if not dataset_id:
        return None
    with ctx.db.begin() as db:
        ds = db.get(DatasetRow, dataset_id)
    return None if ds is None else _names_of(ctx, ds)


def _names_of(ctx: Context, ds: DatasetRow) -> list[str] | None:
    if LABEL_NAMES not in (ds.arrays or {}):
        return None  # read the blob only when the row says the array is there
    return label_names(read_npz(ctx.store.get(ds.blob_key)))


def pack(ctx: Context, *, checkpoint: CheckpointRow, source: dict[str, Any],
         label_names: list[str] | None, filename: str) -> Bundle:
    """The zip: model.tflite, checkpoint.ckpt, manifest.json, Infer.kt, Infer.swift."""
    model_row = models.get(ctx, model_id=checkpoint.model_id)
    model = models.load(ctx, model_id=checkpoint.model_id)
    weights = checkpoints.read_file(ctx, row=checkpoint)
    manifest = {
        "format": FORMAT,
        "model": {"id": model_row.id, "name": model_row.name, "file": "model.tflite",
                  "sha256": hashlib.sha256(model.data).hexdigest(),
                  "size_bytes": len(model.data)},
        "checkpoint": {"file": "checkpoint.ckpt", "sha256": hashlib.sha256(weights).hexdigest(),
                       "size_bytes": len(weights)},
        "weights": source,
        "signatures": {k: v.as_json() for k, v in sorted(model.signatures.items())},
        "label_names": label_names,
    }
    files = {"model.tflite": model.data, "checkpoint.ckpt": weights,
             "manifest.json": (json.dumps(manifest, indent=2) + "\n").encode(),
             "Infer.kt": kotlin(model.signatures).encode(),
             "Infer.swift": swift(model.signatures).encode()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    data = buf.getvalue()
    return Bundle(filename, data, hashlib.sha256(data).hexdigest())
