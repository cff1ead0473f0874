"""The life of long work that jobs and fleets share: queued, running (paused, for fleets),
then one end state; cancel, resume at start, and the final write that must land."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from sqlalchemy import select, update

from app.db.tables import utcnow
from app.services.context import Context
from app.services.workers import ACTIVE, Drivers

log = logging.getLogger("fleetlite.lifecycle")
V = TypeVar("V")
FIRST_WAIT_S, LONGEST_WAIT_S = 0.05, 5.0


class Row(Protocol):
    """What the lifecycle needs of a job's or a fleet's row."""

    id: Any
    status: Any


def land(write: Callable[[], None], what: str, stop: threading.Event | None = None) -> bool:
    """Run `write` until it succeeds, waiting a doubling time (up to LONGEST_WAIT_S) between
    tries; False only when `stop` is set first (the process is stopping: the row keeps its
    active status and the work resumes at the next start, so it still has a driver)."""
    wait = FIRST_WAIT_S
    while True:
        try:
            write()
            return True
        except Exception as exc:  # noqa: BLE001 - retried: an end state must not be lost
            log.warning("%s: write failed (%s); retrying in %.2f s", what, exc, wait)
        if stop is not None and stop.wait(wait):
            return False
        if stop is None:
            time.sleep(wait)
        wait = min(wait * 2, LONGEST_WAIT_S)


def finish(ctx: Context, table: type, row_id: str, status: str, error: str | None = None, *,
           stop: threading.Event | None = None, values: dict[str, object] | None = None,
           if_active: bool = False) -> bool:
    """Record an end state (retried until it lands, see `land`); with `if_active`, only
    over an active status (an end already written stays)."""
    query = update(table).where(table.id == row_id)  # type: ignore[attr-defined]
    if if_active:
        query = query.where(table.status.in_(ACTIVE))  # type: ignore[attr-defined]

    def write() -> None:
        with ctx.db.begin() as db:
            db.execute(query.values(status=status, error=error, finished_at=utcnow(),
                                    **(values or {})))
    return land(write, f"{table.__name__} {row_id} -> {status}", stop)


def cancel(ctx: Context, workers: Drivers, table: type, row: Row) -> None:
    """Ask active work to end "cancelled": a running piece stops after its step or round;
    one that waits for a worker (or was left by a process that is gone) ends now. Its end
    has one writer: its driver once it took the piece, else this call, which writes only
    over an active status (a piece that ended meanwhile keeps its end)."""
    if row.status not in ACTIVE:
        return
    state = workers.state(row.id)
    if not workers.cancel(row.id):  # no driver has it: it ends here, and only here
        finish(ctx, table, row.id, "cancelled", if_active=True)
        if state is not None:
            state.touch()  # its event streams read the end


def live(workers: Drivers, key: str, view: Callable[[Any, Any], V]) -> V | None:
    """Work running in this process, viewed from memory alone (no I/O); None for any other."""
    state = workers.state(key)
    if state is not None and state.status == "running" and state.row is not None:
        return view(state.row, state)
    return None


def read(workers: Drivers, key: str, view: Callable[[Any, Any], V],
         row: Callable[[], Any]) -> V:
    """Work with its live progress: from memory while it runs here, else its row's."""
    found = live(workers, key, view)
    return found if found is not None else view(row(), workers.state(key))


def resume_all(ctx: Context, table: type, workers: Drivers) -> int:
    """At start: queue again every piece a previous process left active, oldest first."""
    with ctx.db.begin() as db:
        ids = list(db.scalars(select(table.id).where(  # type: ignore[attr-defined]
            table.status.in_(ACTIVE)).order_by(table.id)))  # type: ignore[attr-defined]
    for piece_id in ids:
        workers.submit(piece_id)
    return len(ids)
