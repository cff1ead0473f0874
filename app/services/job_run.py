"""Running jobs: one job's run on the executor, driven by a worker thread (workers.py).

A job's worker claims the session, hands the epochs to the executor (app.executor) with
hooks that report progress and give each epoch's checkpoint to the persister, and records
the end state. The worker never touches the session's fields: its claim, its reset and its
release are tasks of the session's strand.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from functools import partial

from sqlalchemy import Connection, Table, bindparam, update

from app.db.tables import CheckpointRow, JobRow, utcnow
from app.errors import NotFound
from app.executor.base import TrainingWork
from app.runtime.runner import Plan
from app.runtime.session import LiveSession, SessionEvicted, Snapshot
from app.services import checkpoints, datasets, jobs, models, sessions
from app.services.context import Context
from app.services.progress import JobState
from app.services.workers import Workers
from app.store.blobs import BlobNotFound

log = logging.getLogger("fleetlite.jobs")
_JOBS = JobRow.__table__
assert isinstance(_JOBS, Table)
_PROGRESS = update(_JOBS).where(_JOBS.c.id == bindparam("b_id")).values(  # built once
    epochs_done=bindparam("b_epochs"), steps_done=bindparam("b_steps"),
    epoch_loss=bindparam("b_losses"), checkpoint_ids=bindparam("b_ckpts"))


class ResumeError(Exception):
    """A job interrupted by a restart cannot continue where it was."""


def job_workers(ctx: Context, workers: int) -> Workers[JobState]:
    """The threads that drive jobs, one job each."""
    return Workers("job", workers, JobState, lambda state: run(ctx, state))


def run(ctx: Context, state: JobState) -> None:
    """Run one job to an end state, or until the process stops (then it stays resumable)."""
    row = jobs.get_row(ctx, job_id=state.job_id)
    if row.status not in jobs.ACTIVE:
        state.status = row.status
        return
    state.total_steps = row.total_steps
    if not state.take():  # cancelled while it waited: the canceller wrote its end
        state.status = "cancelled"
        return
    try:
        live = _claim(ctx, row)
    except Exception as exc:  # e.g. its head checkpoint's file is gone: fail, do not hang
        log.exception("job %s: cannot load session %s", row.id, row.session_id)
        state.status = "failed"
        state.error = ("the session was deleted" if isinstance(exc, NotFound) else
                       f"cannot load session '{row.session_id}': {_reason(exc)}")
        jobs.finish(ctx, row.id, "failed", state.error)
        state.touch()
        return
    try:
        _run(ctx, state, row, live)
    except Exception as exc:  # a job's failure is recorded, never raised into the worker
        log.exception("job %s failed", row.id)
        state.status, state.error = "failed", _reason(exc)
        jobs.finish(ctx, row.id, "failed", state.error, steps_done=state.step)
    finally:
        live.strand.submit(live.set_job, None, only_if=row.id)  # unless a newer job owns it
        state.touch()


def _claim(ctx: Context, row: JobRow) -> LiveSession:
    """The job's session, loaded if need be and owned by the job (train calls get 409)."""
    for _ in range(5):
        live = sessions.live(ctx, session_id=row.session_id)

        def claim(live: LiveSession = live) -> None:
            live.check_present()  # evicted meanwhile: load it again
            live.set_job(row.id)

        try:
            live.strand.submit(claim).result()
            return live
        except SessionEvicted:
            continue
    raise RuntimeError(f"session '{row.session_id}' was evicted repeatedly while loading")


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {getattr(exc, 'detail', exc)}"


def _run(ctx: Context, state: JobState, row: JobRow, live: LiveSession) -> None:
    drow = datasets.get(ctx, dataset_id=row.dataset_id)
    arrays = datasets.load_arrays(ctx, row=drow, model_id=live.model_id)
    fixed = jobs.fixed_batch(live.signatures["train"]) is not None
    resumed = row.started_at is not None
    if resumed:  # back to the state after the last finished epoch, exactly
        start = row.checkpoint_ids[-1] if row.checkpoint_ids else row.start_checkpoint_id
        try:
            live.strand.submit(sessions.reset, ctx, live, checkpoint_id=start).result()
        except (NotFound, BlobNotFound) as exc:
            raise ResumeError(f"cannot resume after epoch {row.epochs_done}: checkpoint "
                              f"'{start}' is gone ({_reason(exc)})") from None
    else:
        head = live.strand.submit(_own_start, ctx, live, row.id).result()
        row.start_checkpoint_id, row.started_at = head, utcnow()
    state.epoch_loss = list(row.epoch_loss)
    state.checkpoint_ids = list(row.checkpoint_ids)
    state.step = row.epochs_done * (row.total_steps // row.epochs)
    state.epoch = row.epochs_done
    state.row = row
    state.status = "running"  # last: views read the live state from now on
    hooks = _Hooks(ctx, state, row, live)
    if not resumed:  # killed before this lands, the job is still queued: it starts over
        hooks.pending = ctx.persister.submit(
            jobs.save_row, ctx, row.id, status="running", started_at=row.started_at,
            start_checkpoint_id=row.start_checkpoint_id)
    plan = Plan(epochs=row.epochs, batch_size=row.batch_size, shuffle=row.shuffle,
                seed=(row.seed,), fixed_batch=fixed, first_epoch=row.epochs_done)
    model_key = models.get(ctx, model_id=live.model_id).blob_key
    head = live.head_checkpoint_id  # the job's start: its weights are the session's now
    start_key = checkpoints.get(ctx, checkpoint_id=head).blob_key if head else None
    try:
        done = ctx.executor.train(
            TrainingWork(live, arrays, plan, model_key, drow.blob_key, start_key,
                         ctx.settings.work_path), hooks)
    finally:
        hooks.wait()  # the last epoch's rows (also when stopping or failing)
    if done:
        state.status = "succeeded"
        jobs.finish(ctx, row.id, "succeeded")
    elif state.cancel.is_set():
        state.status = "cancelled"
        jobs.finish(ctx, row.id, "cancelled", steps_done=state.step)
    # else: stopping at shutdown; the row stays "running" and the job resumes at start


def _own_start(ctx: Context, live: LiveSession, job_id: str) -> str | None:
    """In the strand: a checkpoint of the session's own to go back to (autosaves get pruned
    while the job runs); the id of its head when the job starts."""
    if live.dirty or _head_is_autosave(ctx, live):
        checkpoints.save(ctx, live, kind="job-start", label=f"{job_id} start")
    return live.head_checkpoint_id


def _head_is_autosave(ctx: Context, live: LiveSession) -> bool:
    head = live.head_checkpoint_id
    return head is not None and checkpoints.get(ctx, checkpoint_id=head).kind == "auto"


class _Hooks:
    """A job's hooks: progress into its state, each epoch's checkpoint to the persister."""

    def __init__(self, ctx: Context, state: JobState, row: JobRow, live: LiveSession) -> None:
        self.ctx, self.state, self.row, self.live = ctx, state, row, live
        self.pending: Future[None] | None = None

    def stopped(self) -> bool:
        return self.state.interrupted()

    def progress(self, epoch: int, losses: list[float]) -> None:
        self.state.epoch = epoch
        self.state.step += len(losses)
        self.state.touch()

    def epoch_end(self, epoch: int, mean_loss: float | None, snapshot: Snapshot) -> None:
        self.wait()  # the previous epoch's checkpoint first: rows name durable epochs only
        self.pending = self.ctx.persister.submit(
            partial(_persist_epoch, self.ctx, self.state, self.row, self.live, snapshot, epoch,
                    mean_loss, self.state.step))

    def wait(self) -> None:
        """Wait for the write under way; its failure fails the job."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            pending.result()


def _persist_epoch(ctx: Context, state: JobState, row: JobRow, live: LiveSession,
                   snap: Snapshot, epochs_done: int, mean: float | None,
                   steps_done: int) -> None:
    losses = [*state.epoch_loss, mean]

    def progress(db: Connection, ckpt: CheckpointRow) -> None:  # with the checkpoint's row
        db.execute(_PROGRESS, {"b_id": row.id, "b_epochs": epochs_done, "b_steps": steps_done,
                               "b_losses": losses, "b_ckpts": [*state.checkpoint_ids, ckpt.id]})

    ckpt = checkpoints.persist(ctx, live, snap, kind="epoch",
                               label=f"{row.id} epoch {epochs_done}", also=progress)
    state.epoch_loss.append(mean)
    state.checkpoint_ids.append(ckpt.id)
    state.touch()
