"""Sessions: one user's live interpreter on one base model, persisted through checkpoints."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from app.db.tables import CheckpointRow, FleetClientRow, FleetRow, SessionRow, new_id, utcnow
from app.errors import Conflict, TooManyRequests
from app.metrics import SESSION_EVICTIONS, SESSION_LOADS
from app.runtime.codec import Limits
from app.runtime.interpreter import LiteSession
from app.runtime.session import LiveSession
from app.services import checkpoints, models, rows
from app.services.context import Context
from app.services.pages import Page, paginate
from app.services.workers import ACTIVE


@dataclass
class SessionView:
    """What the API shows: the row, with live counters where the session is loaded."""

    id: str
    user_id: str
    model_id: str
    created_at: datetime
    updated_at: datetime
    steps: int
    last_loss: float | None
    head_checkpoint_id: str | None
    live: bool


def view(row: SessionRow, live: LiveSession | None) -> SessionView:
    """Merge a row with its live counters."""
    if live is None:
        return SessionView(row.id, row.user_id, row.model_id, row.created_at, row.updated_at,
                           row.steps, row.last_loss, row.head_checkpoint_id, False)
    return SessionView(row.id, row.user_id, row.model_id, row.created_at, live.updated_at,
                       live.steps, live.last_loss, live.head_checkpoint_id, True)


def _restore_from(ctx: Context, lite: LiteSession, row: CheckpointRow) -> None:
    path = checkpoints.fetch_to_file(ctx, row=row)
    try:
        lite.restore(path)
    finally:
        path.unlink(missing_ok=True)


def _build(ctx: Context, *, session_id: str, user_id: str, model_id: str,
           start: CheckpointRow | None) -> LiveSession:
    model = models.load(ctx, model_id=model_id)
    lite = LiteSession(model.data, ctx.settings.interpreter_threads)
    if start is not None:
        _restore_from(ctx, lite, start)
    steps = start.step if start else 0
    return LiveSession(
        id=session_id, user_id=user_id, model_id=model_id, signatures=model.signatures,
        lite=lite, strand=ctx.pool.strand(), steps=steps,
        last_loss=start.loss if start else None, saved_steps=steps,
        head_checkpoint_id=start.id if start else None, limits=limits(ctx),
    )


def limits(ctx: Context) -> Limits:
    """What one call may carry, from the settings."""
    return Limits(ctx.settings.max_tensor_elements, ctx.settings.max_batch_size)


def make_room(ctx: Context, user_id: str) -> None:
    """Keep a user under max_live_sessions_per_user: evict their least recently used idle
    session to make room for one more; 429 when every one of them is busy."""
    cap = ctx.settings.max_live_sessions_per_user
    if not cap:
        return
    mine = ctx.pool.of_user(user_id)
    if len(mine) < cap:
        return
    for live in mine:
        if not live.busy and ctx.pool.claim_for_eviction(live):
            live.strand.submit(_evict, ctx, live)
            return
    raise TooManyRequests(f"user '{user_id}' has {len(mine)} sessions in memory, all busy "
                          f"(limit {cap}); retry when one is idle", retry_after=1)


def create(ctx: Context, *, user_id: str, model_id: str,
           checkpoint_id: str | None) -> SessionView:
    """A new live session from the model's initial weights or from a checkpoint."""
    models.get(ctx, model_id=model_id)
    start = None
    if checkpoint_id:
        start = checkpoints.get_for(ctx, checkpoint_id=checkpoint_id, user_id=user_id,
                                    model_id=model_id)
    make_room(ctx, user_id)
    session_id = new_id("ses")
    live = _build(ctx, session_id=session_id, user_id=user_id, model_id=model_id, start=start)
    now = utcnow()
    row = SessionRow(id=session_id, user_id=user_id, model_id=model_id,
                     head_checkpoint_id=live.head_checkpoint_id,
                     head_step=start.step if start else None, steps=live.steps,
                     last_loss=live.last_loss, created_at=now, updated_at=now)
    with ctx.db.begin() as db:
        db.add(row)
    live.updated_at = live.flushed_at = now  # not yet shared: no strand needed
    ctx.pool.add(live)
    evict_idle(ctx)
    return view(row, live)


def get_row(ctx: Context, *, session_id: str) -> SessionRow:
    """A session row, or 404."""
    return rows.get(ctx, SessionRow, session_id, "session")


def get(ctx: Context, *, session_id: str) -> SessionView:
    """A session with its live counters."""
    return view(get_row(ctx, session_id=session_id), ctx.pool.get(session_id))


def get_all(ctx: Context, *, user_id: str, limit: int, cursor: str | None) -> Page[SessionView]:
    """A user's sessions, newest first."""
    with ctx.db.begin() as db:
        page = paginate(db, select(SessionRow).where(SessionRow.user_id == user_id),
                        SessionRow.id, limit=limit, cursor=cursor)
    return Page([view(r, ctx.pool.get(r.id)) for r in page.items], page.next_cursor)


def live(ctx: Context, *, session_id: str) -> LiveSession:
    """The live session, loaded from its head checkpoint if this process has not got it."""
    found = ctx.pool.get(session_id)
    if found is not None:
        return found

    loaded = ctx.pool.get_or_load(
        session_id, lambda: _load(ctx, get_row(ctx, session_id=session_id)))
    evict_idle(ctx)
    return loaded


def _load(ctx: Context, row: SessionRow) -> LiveSession:
    make_room(ctx, row.user_id)
    head = None
    if row.head_checkpoint_id:
        head = checkpoints.get(ctx, checkpoint_id=row.head_checkpoint_id)
    SESSION_LOADS.inc()
    live = _build(ctx, session_id=row.id, user_id=row.user_id, model_id=row.model_id,
                  start=head)
    fleet_id = fleet_of(row.id)
    state = ctx.fleets.state(fleet_id) if fleet_id else None
    if state is not None and state.status in ACTIVE:
        live.job_id = fleet_id  # the fleet trains this device: train calls answer 409
    return live


def fleet_of(session_id: str) -> str | None:
    """The fleet whose device a session is, from its id (ses_<fleet>_<client>), or None."""
    parts = session_id.split("_")
    if len(parts) == 3 and len(parts[2]) == 7 and parts[2].isdigit():
        return f"flt_{parts[1]}"
    return None


def loss_history(ctx: Context, *, session_id: str) -> tuple[int, list[float]]:
    """The step number of the first recent train loss of a live session, and the losses
    (read in its strand, which owns them); nothing for a session not in memory."""
    live = ctx.pool.get(session_id)
    if live is None:
        return 1, []
    return live.strand.submit(live.loss_history).result()


def restore(ctx: Context, session: LiveSession, *, checkpoint_id: str) -> None:
    """Load one of the user's checkpoints into the session. Call inside its strand."""
    session.check_present()
    if session.job_id is not None:
        raise Conflict(f"session '{session.id}' is running job '{session.job_id}'")
    row = checkpoints.get_for(ctx, checkpoint_id=checkpoint_id, user_id=session.user_id,
                              model_id=session.model_id)
    _load_state(ctx, session, row)


def reset(ctx: Context, session: LiveSession, *, checkpoint_id: str | None) -> None:
    """Put the session back to a checkpoint, or to the model's initial weights (None)."""
    row = None
    if checkpoint_id is not None:
        row = checkpoints.get_for(ctx, checkpoint_id=checkpoint_id, user_id=session.user_id,
                                  model_id=session.model_id)
    _load_state(ctx, session, row)


def _load_state(ctx: Context, session: LiveSession, row: CheckpointRow | None) -> None:
    """In the strand: the weights and counters of a checkpoint, or of the initial weights;
    the head goes back too (explicitly, so unconditionally)."""
    lite = None
    if row is None:
        lite = LiteSession(models.load(ctx, model_id=session.model_id).data,
                           ctx.settings.interpreter_threads)
    else:
        _restore_from(ctx, session.lite, row)
    step = row.step if row else 0
    session.reset_to(lite, step, row.loss if row else None, row.id if row else None)
    with ctx.db.begin() as db:
        db.execute(update(SessionRow).where(SessionRow.id == session.id).values(
            head_checkpoint_id=session.head_checkpoint_id, head_step=row.step if row else None,
            steps=step, last_loss=session.last_loss, updated_at=session.updated_at))


def evict_idle(ctx: Context) -> int:
    """Over the live cap: save (kind "auto") and drop the least recently used idle sessions.

    The eviction runs in each session's strand, so calls queued before it still apply and
    calls after it find the session gone and load it again from that checkpoint.
    """
    candidates = ctx.pool.eviction_candidates()
    for live in candidates:
        live.strand.submit(_evict, ctx, live)
    return len(candidates)


def _evict(ctx: Context, live: LiveSession) -> None:
    done = False
    try:
        if not live.evicted and live.job_id is None:
            if live.dirty:
                checkpoints.save(ctx, live, kind="auto")
            live.evicted = done = True
            SESSION_EVICTIONS.inc()
    finally:
        if done:
            ctx.pool.remove(live.id, live)
        else:
            ctx.pool.remove_mark(live.id)


def drop(ctx: Context, live: LiveSession, owner: str | None = None) -> None:
    """In the strand: forget a live session whose weights are saved elsewhere (its head
    moved on): its next call loads it again from the head. `owner`: the fleet that holds
    the session (it lets go of it)."""
    if owner is not None:
        live.set_job(None, only_if=owner)
    if not live.evicted and live.job_id is None:
        live.evicted = True
        ctx.pool.remove(live.id, live)


def delete(ctx: Context, *, session_id: str) -> None:
    """Forget a session; its checkpoints stay."""
    live = ctx.pool.get(session_id)
    if live is not None and live.job_id is not None:
        raise Conflict(f"session '{session_id}' is running job '{live.job_id}'; cancel it first")
    with ctx.db.begin() as db:
        db.delete(rows.get_in(db, SessionRow, session_id, "session"))
    ctx.pool.remove(session_id)


def reconcile(ctx: Context) -> None:
    """At start: a session's counters are those of its head checkpoint (what a load gives).
    The devices of active fleets are left alone: their rounds' commits are their counters'
    one writer (a FedAvg device has no head during its fleet, and its steps are its own)."""
    devices = SessionRow.id.not_in(
        select(FleetClientRow.session_id).join(FleetRow, FleetRow.id == FleetClientRow.fleet_id)
        .where(FleetRow.status.in_(ACTIVE)))
    with ctx.db.begin() as db:
        heads = select(CheckpointRow.step).where(
            CheckpointRow.id == SessionRow.head_checkpoint_id).scalar_subquery()
        losses = select(CheckpointRow.loss).where(
            CheckpointRow.id == SessionRow.head_checkpoint_id).scalar_subquery()
        db.execute(update(SessionRow).where(
            SessionRow.head_checkpoint_id.is_not(None), devices).values(steps=heads,
                                                                         last_loss=losses))
        db.execute(update(SessionRow).where(
            SessionRow.head_checkpoint_id.is_(None), devices).values(steps=0, last_loss=None))

