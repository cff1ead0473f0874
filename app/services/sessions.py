"""Sessions: one user's live interpreter on one base model, persisted through checkpoints."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from app.db.tables import CheckpointRow, SessionRow, new_id, utcnow
from app.errors import Conflict, NotFound, TooManyRequests
from app.metrics import SESSION_EVICTIONS, SESSION_LOADS
from app.runtime.codec import Limits
from app.runtime.interpreter import LiteSession
from app.runtime.pool import LiveSession
from app.services import checkpoints, models
from app.services.fleet import Fleet
from app.services.pages import Page, paginate


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


def _restore_from(fleet: Fleet, lite: LiteSession, row: CheckpointRow) -> None:
    path = checkpoints.fetch_to_file(fleet, row=row)
    try:
        lite.restore(path)
    finally:
        path.unlink(missing_ok=True)


def _build(fleet: Fleet, *, session_id: str, user_id: str, model_id: str,
           start: CheckpointRow | None) -> LiveSession:
    model = models.load(fleet, model_id=model_id)
    lite = LiteSession(model.data, fleet.settings.interpreter_threads)
    if start is not None:
        _restore_from(fleet, lite, start)
    steps = start.step if start else 0
    return LiveSession(
        id=session_id, user_id=user_id, model_id=model_id, signatures=model.signatures,
        lite=lite, strand=fleet.pool.strand(), steps=steps,
        last_loss=start.loss if start else None, saved_steps=steps, flushed_steps=steps,
        head_checkpoint_id=start.id if start else None, limits=limits(fleet),
    )


def limits(fleet: Fleet) -> Limits:
    """What one call may carry, from the settings."""
    return Limits(fleet.settings.max_tensor_elements, fleet.settings.max_batch_size)


def make_room(fleet: Fleet, user_id: str) -> None:
    """Keep a user under max_live_sessions_per_user: evict their least recently used idle
    session to make room for one more; 429 when every one of them is busy."""
    cap = fleet.settings.max_live_sessions_per_user
    if not cap:
        return
    mine = fleet.pool.of_user(user_id)
    if len(mine) < cap:
        return
    for live in mine:
        if not live.busy and fleet.pool.claim_for_eviction(live):
            live.strand.submit(_evict, fleet, live)
            return
    raise TooManyRequests(f"user '{user_id}' has {len(mine)} sessions in memory, all busy "
                          f"(limit {cap}); retry when one is idle", retry_after=1)


def create(fleet: Fleet, *, user_id: str, model_id: str,
           checkpoint_id: str | None) -> SessionView:
    """A new live session from the model's initial weights or from a checkpoint."""
    models.get(fleet, model_id=model_id)
    start = None
    if checkpoint_id:
        start = checkpoints.get_for(fleet, checkpoint_id=checkpoint_id, user_id=user_id,
                                    model_id=model_id)
    make_room(fleet, user_id)
    session_id = new_id("ses")
    live = _build(fleet, session_id=session_id, user_id=user_id, model_id=model_id, start=start)
    now = utcnow()
    row = SessionRow(id=session_id, user_id=user_id, model_id=model_id,
                     head_checkpoint_id=live.head_checkpoint_id, steps=live.steps,
                     last_loss=live.last_loss, created_at=now, updated_at=now)
    with fleet.db.begin() as db:
        db.add(row)
    live.updated_at = now
    fleet.pool.add(live)
    evict_idle(fleet)
    return view(row, live)


def get_row(fleet: Fleet, *, session_id: str) -> SessionRow:
    """A session row, or 404."""
    with fleet.db.begin() as db:
        row = db.get(SessionRow, session_id)
    if row is None:
        raise NotFound(f"session '{session_id}' not found")
    return row


def get(fleet: Fleet, *, session_id: str) -> SessionView:
    """A session with its live counters."""
    return view(get_row(fleet, session_id=session_id), fleet.pool.get(session_id))


def get_all(fleet: Fleet, *, user_id: str, limit: int, cursor: str | None) -> Page[SessionView]:
    """A user's sessions, newest first."""
    with fleet.db.begin() as db:
        page = paginate(db, select(SessionRow).where(SessionRow.user_id == user_id),
                        SessionRow.id, limit=limit, cursor=cursor)
    return Page([view(r, fleet.pool.get(r.id)) for r in page.items], page.next_cursor)


def live(fleet: Fleet, *, session_id: str) -> LiveSession:
    """The live session, loaded from its head checkpoint if this process has not got it."""
    found = fleet.pool.get(session_id)
    if found is not None:
        return found

    def load() -> LiveSession:
        row = get_row(fleet, session_id=session_id)
        make_room(fleet, row.user_id)
        head = None
        if row.head_checkpoint_id:
            head = checkpoints.get(fleet, checkpoint_id=row.head_checkpoint_id)
        SESSION_LOADS.inc()
        return _build(fleet, session_id=row.id, user_id=row.user_id, model_id=row.model_id,
                      start=head)

    loaded = fleet.pool.get_or_load(session_id, load)
    evict_idle(fleet)
    return loaded


def restore(fleet: Fleet, session: LiveSession, *, checkpoint_id: str) -> None:
    """Load one of the user's checkpoints into the session. Call inside its strand."""
    session.check_present()
    if session.job_id is not None:
        raise Conflict(f"session '{session.id}' is running job '{session.job_id}'")
    row = checkpoints.get_for(fleet, checkpoint_id=checkpoint_id, user_id=session.user_id,
                              model_id=session.model_id)
    _load_state(fleet, session, row)


def reset(fleet: Fleet, session: LiveSession, *, checkpoint_id: str | None) -> None:
    """Put the session back to a checkpoint, or to the model's initial weights (None)."""
    row = None
    if checkpoint_id is not None:
        row = checkpoints.get_for(fleet, checkpoint_id=checkpoint_id, user_id=session.user_id,
                                  model_id=session.model_id)
    _load_state(fleet, session, row)


def _load_state(fleet: Fleet, session: LiveSession, row: CheckpointRow | None) -> None:
    if row is None:
        session.lite = LiteSession(models.load(fleet, model_id=session.model_id).data,
                                   fleet.settings.interpreter_threads)
    else:
        _restore_from(fleet, session.lite, row)
    step = row.step if row else 0
    session.steps = session.saved_steps = session.flushed_steps = step
    session.last_loss = row.loss if row else None
    session.head_checkpoint_id = row.id if row else None
    session.updated_at = utcnow()
    with fleet.db.begin() as db:
        db.execute(update(SessionRow).where(SessionRow.id == session.id).values(
            head_checkpoint_id=session.head_checkpoint_id, steps=step,
            last_loss=session.last_loss, updated_at=session.updated_at))


def evict_idle(fleet: Fleet) -> int:
    """Over the live cap: save (kind "auto") and drop the least recently used idle sessions.

    The eviction runs in each session's strand, so calls queued before it still apply and
    calls after it find the session gone and load it again from that checkpoint.
    """
    candidates = fleet.pool.eviction_candidates()
    for live in candidates:
        live.strand.submit(_evict, fleet, live)
    return len(candidates)


def _evict(fleet: Fleet, live: LiveSession) -> None:
    done = False
    try:
        if not live.evicted and live.job_id is None:
            if live.dirty:
                checkpoints.save(fleet, live, kind="auto")
            live.evicted = done = True
            SESSION_EVICTIONS.inc()
    finally:
        if done:
            fleet.pool.remove(live.id, live)
        else:
            fleet.pool.remove_mark(live.id)


def delete(fleet: Fleet, *, session_id: str) -> None:
    """Forget a session; its checkpoints stay."""
    live = fleet.pool.get(session_id)
    if live is not None and live.job_id is not None:
        raise Conflict(f"session '{session_id}' is running job '{live.job_id}'; cancel it first")
    with fleet.db.begin() as db:
        row = db.get(SessionRow, session_id)
        if row is None:
            raise NotFound(f"session '{session_id}' not found")
        db.delete(row)
    fleet.pool.remove(session_id)


def reconcile(fleet: Fleet) -> None:
    """At start: a session's counters are those of its head checkpoint (what a load gives)."""
    with fleet.db.begin() as db:
        heads = select(CheckpointRow.step).where(
            CheckpointRow.id == SessionRow.head_checkpoint_id).scalar_subquery()
        losses = select(CheckpointRow.loss).where(
            CheckpointRow.id == SessionRow.head_checkpoint_id).scalar_subquery()
        db.execute(update(SessionRow).where(
            SessionRow.head_checkpoint_id.is_not(None)).values(steps=heads, last_loss=losses))
        db.execute(update(SessionRow).where(
            SessionRow.head_checkpoint_id.is_(None)).values(steps=0, last_loss=None))

