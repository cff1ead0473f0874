"""Training jobs: epochs of a session over a dataset, with progress, cancel and resume."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update

from app.db.tables import JobRow, new_id
from app.errors import Conflict, InvalidInput, NotFound, TooManyRequests
from app.runtime.runner import steps_per_epoch
from app.runtime.signatures import SignatureSpec
from app.services import datasets, lifecycle, models, rows, sessions
from app.services.context import Context
from app.services.pages import Page, paginate
from app.services.progress import JobState
from app.services.workers import ACTIVE

# Concurrent creates for one session could both pass the "no active job" check otherwise.
# (One process runs the jobs; several processes would need a unique index in the database.)
_ONE_PER_SESSION = threading.Lock()
__all__ = ["ACTIVE", "JobView"]


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


def create(ctx: Context, *, session_id: str, dataset_id: str, epochs: int, batch_size: int,
           shuffle: bool, seed: int | None) -> JobView:
    """Check everything a job needs up front, record it, and queue it."""
    srow = sessions.get_row(ctx, session_id=session_id)
    if batch_size > ctx.settings.max_batch_size:
        raise InvalidInput(f"batch_size {batch_size} is over the limit of "
                           f"{ctx.settings.max_batch_size}")
    drow = datasets.get(ctx, dataset_id=dataset_id)
    if drow.user_id != srow.user_id:
        raise NotFound(f"dataset '{dataset_id}' not found")
    spec = models.load(ctx, model_id=srow.model_id).signatures["train"]
    datasets.check_against(spec, drow.arrays)
    fixed = fixed_batch(spec)
    if fixed is not None and batch_size != fixed:
        raise InvalidInput(f"the model's train signature has a fixed batch of {fixed}; "
                           f"batch_size must be {fixed}")
    per_epoch = steps_per_epoch(drow.num_examples, batch_size, fixed is not None)
    if per_epoch == 0:
        raise InvalidInput(f"batch_size {batch_size} is larger than the dataset "
                           f"({drow.num_examples} examples) and the batch dimension is fixed")
    with _ONE_PER_SESSION, ctx.db.begin() as db:  # check and insert as one step
        busy = db.scalar(select(JobRow.id).where(JobRow.session_id == session_id,
                                                 JobRow.status.in_(ACTIVE)).limit(1))
        if busy:
            raise Conflict(f"session '{session_id}' already runs job '{busy}'")
        cap = ctx.settings.max_jobs_per_user
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
    state = ctx.jobs.submit(row.id)
    return view(row, state)


def fixed_batch(spec: SignatureSpec) -> int | None:
    """The fixed batch size of a train signature, or None when the batch is open."""
    dims = {t.shape[0] for t in spec.inputs.values() if t.shape}
    return None if -1 in dims or not dims else min(dims)


def get_row(ctx: Context, *, job_id: str) -> JobRow:
    """A job row, or 404."""
    return rows.get(ctx, JobRow, job_id, "job")


def get(ctx: Context, *, job_id: str) -> JobView:
    """A job with live progress; a job running here is read from memory alone."""
    return lifecycle.read(ctx.jobs, job_id, view, lambda: get_row(ctx, job_id=job_id))


def live_view(ctx: Context, *, job_id: str) -> JobView | None:
    """A job running in this process, from memory (no I/O); None for any other."""
    return lifecycle.live(ctx.jobs, job_id, view)


def get_all(ctx: Context, *, user_id: str, limit: int, cursor: str | None) -> Page[JobView]:
    """A user's jobs, newest first."""
    with ctx.db.begin() as db:
        page = paginate(db, select(JobRow).where(JobRow.user_id == user_id), JobRow.id,
                        limit=limit, cursor=cursor)
    return Page([view(r, ctx.jobs.state(r.id)) for r in page.items], page.next_cursor)


def cancel(ctx: Context, *, job_id: str) -> JobView:
    """Ask a job to stop after its current step; the session keeps what it learned."""
    lifecycle.cancel(ctx, ctx.jobs, JobRow, get_row(ctx, job_id=job_id))
    return get(ctx, job_id=job_id)


def resume_all(ctx: Context) -> int:
    """At start: queue again every job a previous process left queued or running."""
    return lifecycle.resume_all(ctx, JobRow, ctx.jobs)


def save_row(ctx: Context, job_id: str, **values: object) -> None:
    """Write some columns of a job's row."""
    with ctx.db.begin() as db:
        db.execute(update(JobRow).where(JobRow.id == job_id).values(**values))


def finish(ctx: Context, job_id: str, status: str, error: str | None = None,
           **values: object) -> None:
    """Record a job's end state (retried until it lands: nothing stays running without a
    driver)."""
    lifecycle.finish(ctx, JobRow, job_id, status, error, values=values)
