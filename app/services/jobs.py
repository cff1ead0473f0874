"""Training jobs: epochs of a session over a dataset, with progress, cancel and resume."""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Connection, Table, bindparam, func, select, update

from app.db.tables import CheckpointRow, JobRow, new_id, utcnow
from app.errors import Conflict, InvalidInput, NotFound, TooManyRequests
from app.runtime.epochs import epoch_batches, steps_per_epoch
from app.runtime.pool import Arrays, LiveSession
from app.runtime.signatures import SignatureSpec
from app.services import checkpoints, datasets, models, sessions
from app.services.executor import JobState
from app.services.fleet import Fleet
from app.services.pages import Page, paginate
from app.store.blobs import BlobNotFound

log = logging.getLogger("fleetlite.jobs")
ACTIVE = ("queued", "running")
# Interpreter time per strand turn of a job: how often its progress moves. A call on the
# session does not wait for the turn to end: the turn yields after the step under way.
CHUNK_SECONDS = 0.1
_JOBS = cast(Table, JobRow.__table__)
_PROGRESS = update(_JOBS).where(_JOBS.c.id == bindparam("b_id")).values(  # built once
    epochs_done=bindparam("b_epochs"), steps_done=bindparam("b_steps"),
    epoch_loss=bindparam("b_losses"), checkpoint_ids=bindparam("b_ckpts"))
# Concurrent creates for one session could both pass the "no active job" check otherwise.
# (One process runs the jobs; several processes would need a unique index in the database.)
_ONE_PER_SESSION = threading.Lock()


class ResumeError(Exception):
    """A job interrupted by a restart cannot continue where it was."""


@dataclass
class JobView:
    """A job as the API shows it: the row, with live progress where this process runs it."""

    id: str
    session_id: str
    user_id: str
    dataset_id: str
    status: str
    epochs: int
    batch_size: int
    shuffle: bool
    seed: int
    progress: dict[str, int]
    metrics: dict[str, list[float | None]]
    checkpoint_ids: list[str]
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def view(row: JobRow, state: JobState | None) -> JobView:
    """Merge a row with the live state."""
    # A queued state holds nothing yet (a resumed job's progress is in the row until it runs).
    live = state is not None and state.status == "running" and row.status in ACTIVE
    step = state.step if live and state else row.steps_done
    epoch = (state.epoch if live and state else row.epochs_done)
    losses: list[float | None] = list(state.epoch_loss if live and state else row.epoch_loss)
    return JobView(
        row.id, row.session_id, row.user_id, row.dataset_id,
        state.status if live and state else row.status, row.epochs, row.batch_size,
        row.shuffle, row.seed, {"epoch": epoch, "step": step, "total_steps": row.total_steps},
        {"epoch_loss": losses},
        list(state.checkpoint_ids) if live and state else list(row.checkpoint_ids),
        row.error, row.created_at, row.started_at, row.finished_at)


def create(fleet: Fleet, *, session_id: str, dataset_id: str, epochs: int, batch_size: int,
           shuffle: bool, seed: int | None) -> JobView:
    """Check everything a job needs up front, record it, and queue it."""
    srow = sessions.get_row(fleet, session_id=session_id)
    if batch_size > fleet.settings.max_batch_size:
        raise InvalidInput(f"batch_size {batch_size} is over the limit of "
                           f"{fleet.settings.max_batch_size}")
    drow = datasets.get(fleet, dataset_id=dataset_id)
    if drow.user_id != srow.user_id:
        raise NotFound(f"dataset '{dataset_id}' not found")
    spec = models.load(fleet, model_id=srow.model_id).signatures["train"]
    datasets.check_against(spec, drow.arrays)
    fixed = fixed_batch(spec)
    if fixed is not None and batch_size != fixed:
        raise InvalidInput(f"the model's train signature has a fixed batch of {fixed}; "
                           f"batch_size must be {fixed}")
    per_epoch = steps_per_epoch(drow.num_examples, batch_size, fixed is not None)
    if per_epoch == 0:
        raise InvalidInput(f"batch_size {batch_size} is larger than the dataset "
                           f"({drow.num_examples} examples) and the batch dimension is fixed")
    with _ONE_PER_SESSION, fleet.db.begin() as db:  # check and insert as one step
        busy = db.scalar(select(JobRow.id).where(JobRow.session_id == session_id,
                                                 JobRow.status.in_(ACTIVE)).limit(1))
        if busy:
            raise Conflict(f"session '{session_id}' already runs job '{busy}'")
        cap = fleet.settings.max_jobs_per_user
        active = db.scalar(select(func.count()).where(JobRow.user_id == srow.user_id,
                                                      JobRow.status.in_(ACTIVE)))
        if cap and active and active >= cap:
            raise TooManyRequests(f"user '{srow.user_id}' has {active} jobs queued or running "
                                  f"(limit {cap}); retry when one ends", retry_after=30)
        row = JobRow(id=new_id("job"), session_id=session_id, user_id=srow.user_id,
                     dataset_id=dataset_id, status="queued", epochs=epochs,
                     batch_size=batch_size, shuffle=shuffle,
                     seed=seed if seed is not None else int.from_bytes(os.urandom(4), "big"),
                     total_steps=epochs * per_epoch, epoch_loss=[], checkpoint_ids=[])
        db.add(row)
    state = fleet.jobs.submit(row.id)
    state.total_steps = row.total_steps
    return view(row, state)


def fixed_batch(spec: SignatureSpec) -> int | None:
    """The fixed batch size of a train signature, or None when the batch is open."""
    dims = {t.shape[0] for t in spec.inputs.values() if t.shape}
    return None if -1 in dims or not dims else min(dims)


def get_row(fleet: Fleet, *, job_id: str) -> JobRow:
    """A job row, or 404."""
    with fleet.db.begin() as db:
        row = db.get(JobRow, job_id)
    if row is None:
        raise NotFound(f"job '{job_id}' not found")
    return row


def get(fleet: Fleet, *, job_id: str) -> JobView:
    """A job with live progress."""
    return view(get_row(fleet, job_id=job_id), fleet.jobs.state(job_id))


def get_all(fleet: Fleet, *, user_id: str, limit: int, cursor: str | None) -> Page[JobView]:
    """A user's jobs, newest first."""
    with fleet.db.begin() as db:
        page = paginate(db, select(JobRow).where(JobRow.user_id == user_id), JobRow.id,
                        limit=limit, cursor=cursor)
    return Page([view(r, fleet.jobs.state(r.id)) for r in page.items], page.next_cursor)


def cancel(fleet: Fleet, *, job_id: str) -> JobView:
    """Ask a job to stop after its current step; the session keeps what it learned."""
    row = get_row(fleet, job_id=job_id)
    if row.status in ACTIVE:
        state = fleet.jobs.state(job_id)
        asked = fleet.jobs.cancel(job_id)  # a running job stops after its current step
        if not asked or (state is not None and state.status == "queued"):
            # Waiting for a worker (or left by a process that is gone): it ends now; a
            # worker that picks it up later finds it cancelled and does nothing.
            _finish(fleet, job_id, "cancelled")
            if state is not None:
                state.touch()
    return get(fleet, job_id=job_id)


def resume_all(fleet: Fleet) -> int:
    """At start: queue again every job a previous process left queued or running."""
    with fleet.db.begin() as db:
        ids = list(db.scalars(select(JobRow.id).where(JobRow.status.in_(ACTIVE))
                              .order_by(JobRow.id)))
    for job_id in ids:
        fleet.jobs.submit(job_id)
    return len(ids)


def _save_row(fleet: Fleet, job_id: str, **values: object) -> None:
    with fleet.db.begin() as db:
        db.execute(update(JobRow).where(JobRow.id == job_id).values(**values))


def _finish(fleet: Fleet, job_id: str, status: str, error: str | None = None,
            **values: object) -> None:
    _save_row(fleet, job_id, status=status, error=error, finished_at=utcnow(), **values)


def run(fleet: Fleet, state: JobState) -> None:
    """Run one job to an end state, or until the process stops (then it stays resumable)."""
    row = get_row(fleet, job_id=state.job_id)
    if row.status not in ACTIVE:
        state.status = row.status
        return
    state.total_steps = row.total_steps
    if state.cancel.is_set():
        state.status = "cancelled"
        _finish(fleet, row.id, "cancelled")
        return
    try:
        live = sessions.live(fleet, session_id=row.session_id)
    except Exception as exc:  # e.g. its head checkpoint's file is gone: fail, do not hang
        log.exception("job %s: cannot load session %s", row.id, row.session_id)
        state.status = "failed"
        state.error = ("the session was deleted" if isinstance(exc, NotFound) else
                       f"cannot load session '{row.session_id}': {_reason(exc)}")
        _finish(fleet, row.id, "failed", state.error)
        state.touch()
        return
    live.job_id = row.id
    try:
        _run_epochs(fleet, state, row, live)
    except Exception as exc:  # a job's failure is recorded, never raised into the executor
        log.exception("job %s failed", row.id)
        state.status, state.error = "failed", _reason(exc)
        _finish(fleet, row.id, "failed", state.error, steps_done=state.step)
    finally:
        if live.job_id == row.id:  # a job started after this one ended owns it now
            live.job_id = None
        state.touch()


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {getattr(exc, 'detail', exc)}"


def _run_epochs(fleet: Fleet, state: JobState, row: JobRow, live: LiveSession) -> None:
    arrays = datasets.load_arrays(fleet, row=datasets.get(fleet, dataset_id=row.dataset_id),
                                  model_id=live.model_id)
    fixed = fixed_batch(live.signatures["train"]) is not None
    resumed = row.started_at is not None
    if resumed:  # back to the state after the last finished epoch, exactly
        start = row.checkpoint_ids[-1] if row.checkpoint_ids else row.start_checkpoint_id
        try:
            _strand(live, sessions.reset, fleet, live, checkpoint_id=start)
        except (NotFound, BlobNotFound) as exc:
            raise ResumeError(f"cannot resume after epoch {row.epochs_done}: checkpoint "
                              f"'{start}' is gone ({_reason(exc)})") from None
    else:
        if live.dirty or _head_is_autosave(fleet, live):
            # A checkpoint of its own to go back to: autosaves get pruned while it runs.
            _strand(live, checkpoints.save, fleet, live, kind="job-start",
                    label=f"{row.id} start")
        row.start_checkpoint_id = live.head_checkpoint_id
    state.epoch_loss = list(row.epoch_loss)
    state.checkpoint_ids = list(row.checkpoint_ids)
    per_epoch = row.total_steps // row.epochs
    state.step = row.epochs_done * per_epoch
    state.epoch = row.epochs_done
    state.status = "running"  # last: views read the live state from now on
    # The rows are written by a persister thread while the session trains: one at a time, in
    # order, so the row's epochs_done only ever names an epoch whose checkpoint is durable.
    # Leaving the block (done, cancelled, stopping, failing) waits for the write under way.
    with ThreadPoolExecutor(1, thread_name_prefix=f"persist-{row.id}") as persister:
        pending: Future[None] | None = None
        if not resumed:  # killed before this lands, the job is still queued: it starts over
            pending = persister.submit(_save_row, fleet, row.id, status="running",
                                       started_at=utcnow(),
                                       start_checkpoint_id=row.start_checkpoint_id)
        for epoch in range(row.epochs_done, row.epochs):
            state.epoch = epoch + 1
            state.touch()
            batches = epoch_batches(arrays, batch_size=row.batch_size, epoch=epoch,
                                    seed=row.seed, shuffle=row.shuffle, fixed_batch=fixed)
            losses: list[float] = []
            snap: checkpoints.Snapshot | None = None
            while snap is None:
                if state.stop.is_set():
                    return  # shutting down: stays "running" in the DB, resumes at start
                if state.cancel.is_set():
                    _wait(pending)
                    state.status = "cancelled"
                    _finish(fleet, row.id, "cancelled", steps_done=state.step)
                    return
                chunk, snap = _strand(live, _train_chunk, fleet, live, batches,
                                      per_epoch - len(losses), state.interrupted)
                losses.extend(chunk)
                state.step += len(chunk)
                state.touch()
            known = [x for x in losses if not math.isnan(x)]  # NaN: no loss reported
            mean = sum(known) / len(known) if known else None
            _wait(pending)  # the previous epoch's checkpoint first
            pending = persister.submit(
                _persist_epoch, fleet, state, row, live, snap, epoch + 1,
                mean if mean is not None and math.isfinite(mean) else None, state.step)
        _wait(pending)
    state.status = "succeeded"
    _finish(fleet, row.id, "succeeded")


def _train_chunk(fleet: Fleet, live: LiveSession, batches: Iterator[Arrays], todo: int,
                 stop: Callable[[], bool]) -> tuple[list[float], checkpoints.Snapshot | None]:
    """In the strand: train on up to `todo` more batches of the epoch, and when they are
    done, snapshot the weights in the same turn, before any other call can change them."""
    losses = live.train_steps(batches, CHUNK_SECONDS, stop)
    if len(losses) < todo:
        if not losses:  # cannot happen: epoch_batches yields steps_per_epoch batches
            raise RuntimeError(f"the epoch ran out of batches {todo} steps before its end")
        return losses, None
    return losses, checkpoints.snapshot(fleet, live)


def _persist_epoch(fleet: Fleet, state: JobState, row: JobRow, live: LiveSession,
                   snap: checkpoints.Snapshot, epochs_done: int, mean: float | None,
                   steps_done: int) -> None:
    losses = [*state.epoch_loss, mean]

    def progress(db: Connection, ckpt: CheckpointRow) -> None:  # with the checkpoint's row
        db.execute(_PROGRESS, {"b_id": row.id, "b_epochs": epochs_done, "b_steps": steps_done,
                               "b_losses": losses, "b_ckpts": [*state.checkpoint_ids, ckpt.id]})

    ckpt = checkpoints.persist(fleet, live, snap, kind="epoch",
                               label=f"{row.id} epoch {epochs_done}", also=progress)
    state.epoch_loss.append(mean)
    state.checkpoint_ids.append(ckpt.id)
    state.touch()


def _wait(pending: Future[None] | None) -> None:
    """Wait for a persist; its failure fails the job."""
    if pending is not None:
        pending.result()


def _head_is_autosave(fleet: Fleet, live: LiveSession) -> bool:
    head = live.head_checkpoint_id
    return head is not None and checkpoints.get(fleet, checkpoint_id=head).kind == "auto"


def _strand(live: LiveSession, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Run fn in the session's strand and wait: API calls on the session interleave FIFO."""
    return live.strand.submit(fn, *args, **kwargs).result()
