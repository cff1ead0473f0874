"""Background work: flush step counters, autosave dirty sessions, save everything at shutdown."""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy import bindparam, select, update

from app.db.tables import CheckpointRow, DatasetRow, FleetRow, ModelRow, SessionRow
from app.errors import FleetliteError
from app.metrics import BACKGROUND_POSTPONED
from app.runtime.session import LiveSession
from app.services import checkpoints, fleet, jobs, keys, sessions
from app.services.context import Context

log = logging.getLogger("fleetlite.maintenance")
_COUNTERS = update(SessionRow).where(SessionRow.id == bindparam("b_id")).values(
    steps=bindparam("b_steps"), last_loss=bindparam("b_loss"), updated_at=bindparam("b_at"))


def flush_counters(ctx: Context) -> int:
    """Write live step counters to the session rows; returns how many changed.

    The flusher (this function, never two at once: the periodic task, then shutdown) owns
    `flushed_at`; the counters it reads are the strand's, each read once (a torn read across
    fields only delays a value to the next flush, since updated_at is read first).
    """
    snapshot = []
    for s in ctx.pool.all():
        at = s.updated_at
        if at != s.flushed_at:
            snapshot.append((s, at, s.steps, s.last_loss))
    if not snapshot:
        return 0
    # In id order, as a fleet's round writes its devices' rows: two transactions that lock
    # the same rows in the same order wait for each other instead of deadlocking.
    snapshot.sort(key=lambda item: item[0].id)
    with ctx.db.begin_core() as conn:
        conn.execute(_COUNTERS, [{"b_id": s.id, "b_steps": steps, "b_loss": loss, "b_at": at}
                                 for s, at, steps, loss in snapshot])
    for s, at, _, _ in snapshot:
        s.flushed_at = at
    return len(snapshot)


async def autosave_all(ctx: Context, *, check_store: bool = True) -> int:
    """Checkpoint (kind "auto") every live session with steps not yet in a checkpoint.

    A save runs in the session's strand, so a store that hangs would stall the session's
    train and infer calls: the store is asked first, outside any strand, and the round is
    skipped when it does not answer.
    """
    if check_store and any(s.dirty for s in ctx.pool.all()):
        try:
            await asyncio.to_thread(ctx.store.ping)
        except FleetliteError as exc:
            log.warning("autosave skipped, the store does not answer: %s", exc.detail)
            BACKGROUND_POSTPONED.labels("autosave").inc()
            return 0
    futures = []
    for live in ctx.pool.all():
        if live.dirty:
            futures.append(asyncio.wrap_future(
                live.strand.submit(_autosave_if_dirty, ctx, live)))
    results = await asyncio.gather(*futures, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            log.error("autosave failed: %s", r)
    return sum(1 for r in results if r is True)


def _autosave_if_dirty(ctx: Context, live: LiveSession) -> bool:
    if not live.dirty or ctx.pool.get(live.id) is not live:
        return False
    checkpoints.save(ctx, live, kind="auto")
    return True


def sweep_orphans(ctx: Context) -> int:
    """At start, before serving: delete blobs no row points to, and scratch files.

    Blob first, row second means a crash between the two leaves a blob without a row;
    nothing else is in flight at start, so every such blob is an orphan.
    """
    with ctx.db.begin() as db:
        known = set(db.scalars(select(CheckpointRow.blob_key)))
        known.update(db.scalars(select(DatasetRow.blob_key)))
        known.update(db.scalars(select(ModelRow.blob_key)))
        fleet_dirs = tuple(f"users/{user}/fleets/{fid}/" for fid, user in db.execute(
            select(FleetRow.id, FleetRow.user_id)))
    orphans = [k for prefix in ("users/", "models/") for k in ctx.store.keys(prefix)
               if k not in known and not k.startswith(fleet_dirs)]
    for key in orphans:
        ctx.store.delete(key)
    ctx.store.remove_partial_writes()  # a local put killed mid-write leaves "key#N"
    for leftover in ctx.settings.work_path.glob("*.ckpt"):
        leftover.unlink(missing_ok=True)
    if orphans:
        log.warning("deleted %d orphaned blob(s) left by an interrupted save", len(orphans))
    return len(orphans)


async def start(ctx: Context) -> None:
    """Start-up chores. Reconcile and the orphan sweep are hygiene: if a dependency is down
    they are skipped (the sweep must not run later, beside saves in flight). Jobs left by
    the previous process are resumed now, or by run_periodic once the database answers."""
    for chore in (sessions.reconcile, sweep_orphans):
        try:
            await asyncio.to_thread(chore, ctx)
        except FleetliteError as exc:
            log.error("start-up %s skipped: %s", chore.__name__, exc.detail)
    await _resume_jobs(ctx)


async def _resume_jobs(ctx: Context) -> None:
    """Jobs and fleets left by the previous process, queued again once the database answers."""
    # Each kind is marked resumed as soon as it is, so a failure of the other never queues it
    # again; and a piece already queued here is never driven twice (Workers.submit).
    resumed = resumed_fleets = 0
    try:
        if not ctx.jobs_resumed:
            resumed = await asyncio.to_thread(jobs.resume_all, ctx)
            ctx.jobs_resumed = True
        if not ctx.fleets_resumed:
            resumed_fleets = await asyncio.to_thread(fleet.resume_all, ctx)
            ctx.fleets_resumed = True
    except FleetliteError as exc:
        log.warning("resuming jobs and fleets postponed: %s", exc.detail)
        return
    if resumed or resumed_fleets:
        log.info("resuming %d job(s) and %d fleet(s) left by the previous process", resumed,
                 resumed_fleets)


async def run_periodic(ctx: Context) -> None:
    """Flush counters every flush_seconds and autosave every autosave_seconds, forever."""
    settings = ctx.settings
    next_save = time.monotonic() + settings.autosave_seconds
    while True:
        await asyncio.sleep(min(settings.flush_seconds, settings.autosave_seconds))
        await _resume_jobs(ctx)
        try:
            await asyncio.to_thread(flush_counters, ctx)
            await asyncio.to_thread(keys.flush_last_used, ctx)
            if time.monotonic() >= next_save:
                next_save = time.monotonic() + settings.autosave_seconds
                await autosave_all(ctx)
        except FleetliteError as exc:  # a dependency is down: try again next round
            log.warning("background flush/autosave postponed: %s", exc.detail)
            BACKGROUND_POSTPONED.labels("flush").inc()
        except Exception:
            log.exception("background flush/autosave failed")


async def shutdown(ctx: Context) -> None:
    """Stop jobs (they stay resumable), save every session with unsaved steps, flush."""
    started = time.monotonic()
    await asyncio.gather(asyncio.to_thread(ctx.fleets.shutdown),
                         asyncio.to_thread(ctx.jobs.shutdown))
    saved = await autosave_all(ctx)
    await asyncio.to_thread(flush_counters, ctx)
    log.info("shutdown: checkpointed %d session(s) in %.2f s", saved,
             time.monotonic() - started)
