"""Checkpoints: files written by a model's save signature, stored under the user's prefix."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import cast

from sqlalchemy import Connection, Table, bindparam, insert, or_, select, update

from app.db.tables import CheckpointRow, SessionRow, new_id, utcnow
from app.errors import Conflict, InvalidInput, NotFound
from app.runtime.session import LiveSession, Snapshot
from app.services import rows, usage
from app.services.context import Context
from app.services.pages import Page, paginate

# Built once: jobs persist every epoch, and a prebuilt Core statement costs a fraction of the
# ORM (about 0.3 ms against 2 ms of CPU for an epoch's rows on SQLite), CPU that would
# otherwise hold the GIL while the session trains the next epoch.
_CHECKPOINTS = cast(Table, CheckpointRow.__table__)
_SESSIONS = cast(Table, SessionRow.__table__)
_INSERT = insert(_CHECKPOINTS)
# A checkpoint becomes the head only if it holds at least as many steps as the head has: the
# condition is checked by the UPDATE itself, so a late epoch checkpoint cannot replace a
# manual save that committed meanwhile (tests/services/test_head_race.py).
_ADOPT = update(_SESSIONS).where(
    _SESSIONS.c.id == bindparam("b_id"),
    or_(_SESSIONS.c.head_step.is_(None), _SESSIONS.c.head_step <= bindparam("b_steps")),
).values(head_checkpoint_id=bindparam("b_head"), head_step=bindparam("b_steps"),
         steps=bindparam("b_steps"), last_loss=bindparam("b_loss"),
         updated_at=bindparam("b_at"))


def save(ctx: Context, live: LiveSession, *, kind: str, label: str | None = None) -> CheckpointRow:
    """Run the save signature and keep the file. Call inside the session's strand."""
    row, adopted = store(ctx, live, snapshot(ctx, live), kind=kind, label=label)
    if adopted:
        live.adopt_head(row.id, row.step)
    return row


def snapshot(ctx: Context, live: LiveSession) -> Snapshot:
    """Run the save signature into memory. Call inside the session's strand."""
    return live.snapshot(ctx.settings.work_path)


def persist(ctx: Context, live: LiveSession, snap: Snapshot, *, kind: str,
            label: str | None = None,
            also: Callable[[Connection, CheckpointRow], None] | None = None) -> CheckpointRow:
    """Store a snapshot from outside the strand (the persister: a job's epoch checkpoint is
    written while the next epoch trains); the session's strand adopts it as its head if no
    newer checkpoint was saved meanwhile."""
    row, adopted = store(ctx, live, snap, kind=kind, label=label, also=also)
    if adopted:
        live.strand.submit(live.adopt_head, row.id, row.step)
    return row


def store(ctx: Context, live: LiveSession, snap: Snapshot, *, kind: str,
          label: str | None = None,
          also: Callable[[Connection, CheckpointRow], None] | None = None
          ) -> tuple[CheckpointRow, bool]:
    """Blob first, row second; the row and the session's head in one transaction, the head
    only when it moves forward. `also` writes more in that transaction (a job's progress).
    Returns the row and whether it became the head."""
    ckpt_id = new_id("ckpt")
    key = f"users/{live.user_id}/checkpoints/{ckpt_id}.ckpt"
    ctx.store.put(key, snap.data)
    values = {"id": ckpt_id, "user_id": live.user_id, "model_id": live.model_id,
              "session_id": live.id, "step": snap.steps, "loss": snap.loss, "kind": kind,
              "label": label, "sha256": hashlib.sha256(snap.data).hexdigest(),
              "size_bytes": len(snap.data), "blob_key": key, "created_at": utcnow()}
    row = CheckpointRow(**values)
    try:
        with ctx.db.begin_core() as conn:
            conn.execute(_INSERT, [values])
            if also is not None:
                also(conn, row)
            adopted = conn.execute(_ADOPT, {
                "b_id": live.id, "b_head": ckpt_id, "b_steps": snap.steps, "b_loss": snap.loss,
                "b_at": snap.updated_at}).rowcount == 1
    except BaseException:
        ctx.store.delete(key)
        raise
    if kind == "auto":
        prune_autosaves(ctx, session_id=live.id, keep=ctx.settings.keep_autosaves)
    return row, adopted


def prune_autosaves(ctx: Context, *, session_id: str, keep: int) -> int:
    """Delete a session's autosaves beyond the newest `keep`, never its current head."""
    with ctx.db.begin() as db:
        head = db.scalar(select(SessionRow.head_checkpoint_id).where(SessionRow.id == session_id))
        old = list(db.scalars(
            select(CheckpointRow).where(CheckpointRow.session_id == session_id,
                                        CheckpointRow.kind == "auto")
            .order_by(CheckpointRow.id.desc()).offset(keep)))
        old = [r for r in old if r.id != head]
        for r in old:
            db.delete(r)
    for r in old:  # row first here: a blob without a row is harmless, the reverse is not
        ctx.store.delete(r.blob_key)
    return len(old)


def get(ctx: Context, *, checkpoint_id: str) -> CheckpointRow:
    """A checkpoint row, or 404."""
    return rows.get(ctx, CheckpointRow, checkpoint_id, "checkpoint")


def get_for(ctx: Context, *, checkpoint_id: str, user_id: str, model_id: str) -> CheckpointRow:
    """A checkpoint that a session of user_id on model_id may start from or restore."""
    row = get(ctx, checkpoint_id=checkpoint_id)
    if row.user_id != user_id:
        raise NotFound(f"checkpoint '{checkpoint_id}' not found")  # do not reveal others' ids
    if row.model_id != model_id:
        raise InvalidInput(f"checkpoint '{checkpoint_id}' belongs to model '{row.model_id}', "
                           f"not '{model_id}'")
    return row


def get_all(ctx: Context, *, user_id: str, model_id: str | None, session_id: str | None,
            limit: int, cursor: str | None) -> Page[CheckpointRow]:
    """A user's checkpoints, newest first, optionally filtered."""
    query = select(CheckpointRow).where(CheckpointRow.user_id == user_id)
    if model_id:
        query = query.where(CheckpointRow.model_id == model_id)
    if session_id:
        query = query.where(CheckpointRow.session_id == session_id)
    with ctx.db.begin() as db:
        return paginate(db, query, CheckpointRow.id, limit=limit, cursor=cursor)


def read_file(ctx: Context, *, row: CheckpointRow) -> bytes:
    """The checkpoint file's bytes."""
    return ctx.store.get(row.blob_key)


def fetch_to_file(ctx: Context, *, row: CheckpointRow) -> Path:
    """Copy a checkpoint to a scratch file for the restore signature; the caller deletes it."""
    path = ctx.settings.work_path / f"restore-{new_id('tmp')}.ckpt"
    path.write_bytes(read_file(ctx, row=row))
    return path


def delete(ctx: Context, *, checkpoint_id: str) -> None:
    """Delete a checkpoint unless it holds a session's current weights."""
    with ctx.db.begin() as db:
        row = rows.get_in(db, CheckpointRow, checkpoint_id, "checkpoint")
        usage.check_checkpoint(db, checkpoint_id)
        holder = db.scalar(select(SessionRow.id).where(
            SessionRow.head_checkpoint_id == checkpoint_id).limit(1))
        if holder:
            raise Conflict(f"checkpoint '{checkpoint_id}' holds the current weights of session "
                           f"'{holder}'; save a newer checkpoint of it first")
        db.delete(row)
    ctx.store.delete(row.blob_key)
