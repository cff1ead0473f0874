"""Checkpoints: files written by a model's save signature, stored under the user's prefix."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import cast

from sqlalchemy import Connection, Table, bindparam, insert, select, update

from app.db.tables import CheckpointRow, SessionRow, new_id, utcnow
from app.errors import Conflict, InvalidInput, NotFound
from app.runtime.pool import LiveSession
from app.services.fleet import Fleet
from app.services.pages import Page, paginate

# Built once: jobs persist every epoch, and a prebuilt Core statement costs a fraction of the
# ORM (about 0.3 ms against 2 ms of CPU for an epoch's rows on SQLite), CPU that would
# otherwise hold the GIL while the session trains the next epoch.
_CHECKPOINTS = cast(Table, CheckpointRow.__table__)
_SESSIONS = cast(Table, SessionRow.__table__)
_INSERT = insert(_CHECKPOINTS)
_ADOPT = update(_SESSIONS).where(_SESSIONS.c.id == bindparam("b_id")).values(
    head_checkpoint_id=bindparam("b_head"), steps=bindparam("b_steps"),
    last_loss=bindparam("b_loss"), updated_at=bindparam("b_at"))


@dataclass(frozen=True)
class Snapshot:
    """A session's weights as its save signature wrote them, and the counters they go with."""

    data: bytes
    steps: int
    loss: float | None
    updated_at: datetime


def save(fleet: Fleet, live: LiveSession, *, kind: str, label: str | None = None) -> CheckpointRow:
    """Run the save signature and keep the file. Call inside the session's strand."""
    return persist(fleet, live, snapshot(fleet, live), kind=kind, label=label)


def snapshot(fleet: Fleet, live: LiveSession) -> Snapshot:
    """Run the save signature into memory. Call inside the session's strand."""
    live.check_present()
    path = fleet.settings.work_path / f"{new_id('snap')}.ckpt"
    try:
        live.lite.save(path)
        data = path.read_bytes()
    finally:
        path.unlink(missing_ok=True)
    return Snapshot(data, live.steps, live.last_loss, live.updated_at)


def persist(fleet: Fleet, live: LiveSession, snap: Snapshot, *, kind: str,
            label: str | None = None,
            also: Callable[[Connection, CheckpointRow], None] | None = None) -> CheckpointRow:
    """Store a snapshot as the session's newest checkpoint: blob first, row second.

    Safe outside the strand (jobs persist an epoch while the next one trains): the session
    only adopts it as its head when no later snapshot was saved meanwhile. `also` writes
    more in the same transaction (a job's progress row). Core statements, not the ORM:
    jobs write this once an epoch while the next one trains.
    """
    ckpt_id = new_id("ckpt")
    key = f"users/{live.user_id}/checkpoints/{ckpt_id}.ckpt"
    fleet.store.put(key, snap.data)
    values = {"id": ckpt_id, "user_id": live.user_id, "model_id": live.model_id,
              "session_id": live.id, "step": snap.steps, "loss": snap.loss, "kind": kind,
              "label": label, "sha256": hashlib.sha256(snap.data).hexdigest(),
              "size_bytes": len(snap.data), "blob_key": key, "created_at": utcnow()}
    row = CheckpointRow(**values)
    newest = snap.steps >= live.saved_steps
    try:
        with fleet.db.begin_core() as conn:
            conn.execute(_INSERT, [values])
            if also is not None:
                also(conn, row)
            if newest:
                conn.execute(_ADOPT, {"b_id": live.id, "b_head": ckpt_id, "b_steps": snap.steps,
                                      "b_loss": snap.loss, "b_at": snap.updated_at})
    except BaseException:
        fleet.store.delete(key)
        raise
    if newest:
        # flushed_steps too: the row now says snap.steps, so the next flush writes any more.
        live.saved_steps = live.flushed_steps = snap.steps
        live.head_checkpoint_id = ckpt_id
    if kind == "auto":
        prune_autosaves(fleet, session_id=live.id, keep=fleet.settings.keep_autosaves)
    return row


def prune_autosaves(fleet: Fleet, *, session_id: str, keep: int) -> int:
    """Delete a session's autosaves beyond the newest `keep`, never its current head."""
    with fleet.db.begin() as db:
        head = db.scalar(select(SessionRow.head_checkpoint_id).where(SessionRow.id == session_id))
        old = list(db.scalars(
            select(CheckpointRow).where(CheckpointRow.session_id == session_id,
                                        CheckpointRow.kind == "auto")
            .order_by(CheckpointRow.id.desc()).offset(keep)))
        old = [r for r in old if r.id != head]
        for r in old:
            db.delete(r)
    for r in old:  # row first here: a blob without a row is harmless, the reverse is not
        fleet.store.delete(r.blob_key)
    return len(old)


def get(fleet: Fleet, *, checkpoint_id: str) -> CheckpointRow:
    """A checkpoint row, or 404."""
    with fleet.db.begin() as db:
        row = db.get(CheckpointRow, checkpoint_id)
    if row is None:
        raise NotFound(f"checkpoint '{checkpoint_id}' not found")
    return row


def get_for(fleet: Fleet, *, checkpoint_id: str, user_id: str, model_id: str) -> CheckpointRow:
    """A checkpoint that a session of user_id on model_id may start from or restore."""
    row = get(fleet, checkpoint_id=checkpoint_id)
    if row.user_id != user_id:
        raise NotFound(f"checkpoint '{checkpoint_id}' not found")  # do not reveal others' ids
    if row.model_id != model_id:
        raise InvalidInput(f"checkpoint '{checkpoint_id}' belongs to model '{row.model_id}', "
                           f"not '{model_id}'")
    return row


def get_all(fleet: Fleet, *, user_id: str, model_id: str | None, session_id: str | None,
            limit: int, cursor: str | None) -> Page[CheckpointRow]:
    """A user's checkpoints, newest first, optionally filtered."""
    query = select(CheckpointRow).where(CheckpointRow.user_id == user_id)
    if model_id:
        query = query.where(CheckpointRow.model_id == model_id)
    if session_id:
        query = query.where(CheckpointRow.session_id == session_id)
    with fleet.db.begin() as db:
        return paginate(db, query, CheckpointRow.id, limit=limit, cursor=cursor)


def read_file(fleet: Fleet, *, row: CheckpointRow) -> bytes:
    """The checkpoint file's bytes."""
    return fleet.store.get(row.blob_key)


def fetch_to_file(fleet: Fleet, *, row: CheckpointRow) -> Path:
    """Copy a checkpoint to a scratch file for the restore signature; the caller deletes it."""
    path = fleet.settings.work_path / f"restore-{new_id('tmp')}.ckpt"
    path.write_bytes(read_file(fleet, row=row))
    return path


def delete(fleet: Fleet, *, checkpoint_id: str) -> None:
    """Delete a checkpoint unless it holds a session's current weights."""
    with fleet.db.begin() as db:
        row = db.get(CheckpointRow, checkpoint_id)
        if row is None:
            raise NotFound(f"checkpoint '{checkpoint_id}' not found")
        holder = db.scalar(select(SessionRow.id).where(
            SessionRow.head_checkpoint_id == checkpoint_id).limit(1))
        if holder:
            raise Conflict(f"checkpoint '{checkpoint_id}' holds the current weights of session "
                           f"'{holder}'; save a newer checkpoint of it first")
        db.delete(row)
    fleet.store.delete(row.blob_key)
