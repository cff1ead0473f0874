"""Sessions: one user's live interpreter on one base model, persisted through checkpoints."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from app.db.tables import CheckpointRow, SessionRow, new_id, utcnow
from app.errors import NotFound
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
        head_checkpoint_id=start.id if start else None,
    )


def create(fleet: Fleet, *, user_id: str, model_id: str,
           checkpoint_id: str | None) -> SessionView:
    """A new live session from the model's initial weights or from a checkpoint."""
    models.get(fleet, model_id=model_id)
    start = None
    if checkpoint_id:
        start = checkpoints.get_for(fleet, checkpoint_id=checkpoint_id, user_id=user_id,
                                    model_id=model_id)
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
        head = None
        if row.head_checkpoint_id:
            head = checkpoints.get(fleet, checkpoint_id=row.head_checkpoint_id)
        return _build(fleet, session_id=row.id, user_id=row.user_id, model_id=row.model_id,
                      start=head)

    return fleet.pool.get_or_load(session_id, load)


def restore(fleet: Fleet, session: LiveSession, *, checkpoint_id: str) -> None:
    """Load a checkpoint's weights into the session. Call inside the session's strand."""
    row = checkpoints.get_for(fleet, checkpoint_id=checkpoint_id, user_id=session.user_id,
                              model_id=session.model_id)
    _restore_from(fleet, session.lite, row)
    session.steps = session.saved_steps = session.flushed_steps = row.step
    session.last_loss = row.loss
    session.head_checkpoint_id = row.id
    session.updated_at = utcnow()
    with fleet.db.begin() as db:
        db.execute(update(SessionRow).where(SessionRow.id == session.id).values(
            head_checkpoint_id=row.id, steps=row.step, last_loss=row.loss,
            updated_at=session.updated_at))


def delete(fleet: Fleet, *, session_id: str) -> None:
    """Forget a session; its checkpoints stay."""
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

