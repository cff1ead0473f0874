"""Running a fleet: rounds on the virtual clock, client updates on the executor, the
strategy's aggregation, evaluation, and each round committed (blobs first, then rows in one
transaction), so a fleet stopped or killed resumes from its last finished round and ends
bit-identical to an uninterrupted one.

`drive` is a generator that yields after every round: the scheduler (schedule.py) hands the
fleet workers to fleets of different users in turn. A store that refuses writes during a
round sends the fleet back to its last committed round after a bounded wait, and past a few
tries the fleet says "paused" until the store takes writes again.
"""

from __future__ import annotations

import logging
from collections.abc import Generator

from app.errors import NotFound
from app.executor.update import Interrupted, public_reason
from app.services.context import Context
from app.services.fleet import async_loop, commit, finish, record
from app.services.fleet import rows as fleet_rows
from app.services.fleet.loop import Stalled, UpdateFailed, rounds
from app.services.fleet.updates import NonFiniteGlobal
from app.services.lifecycle import land
from app.services.progress import FleetState
from app.services.workers import ACTIVE
from app.store.blobs import StoreUnavailable

log = logging.getLogger("fleetlite.fleets")
ROUND_RETRIES = 3  # tries of a round whose store writes fail, before the fleet pauses
FIRST_RETRY_S, LONGEST_RETRY_S = 0.5, 30.0


def drive(ctx: Context, state: FleetState) -> Generator[float | None, None, None]:
    """Run one fleet to an end state, or until the process stops (then it resumes at start
    from its last finished round); yields between rounds."""
    try:
        row = fleet_rows.get_row(ctx, fleet_id=state.fleet_id)
    except NotFound:  # deleted while it waited: nothing to drive
        state.status = "deleted"
        return
    state.row, state.rounds, state.round = row, row.spec["rounds"], row.rounds_done
    if row.status not in ACTIVE:
        state.status = row.status
        return
    if not state.take():  # cancelled while it waited: the canceller wrote its end
        state.status = "cancelled"
        return
    tries = 0
    try:
        while True:  # a store that refuses writes sends the fleet back to its last commit
            try:
                done = yield from _run(ctx, state, row.id)
                break
            except StoreUnavailable as exc:
                tries += 1
                if state.stop.is_set() or not (yield from _wait_for_store(ctx, state, exc,
                                                                         tries)):
                    return  # stopping or cancelled while waiting
        if done:
            _end(ctx, state, "succeeded")
        elif state.status in ACTIVE and not state.stop.is_set():
            _end(ctx, state, "cancelled")
    except Interrupted:
        pass  # stopping at shutdown: the round under way is dropped; it resumes at start
    except (Stalled, NonFiniteGlobal, UpdateFailed) as exc:
        _end(ctx, state, "failed", str(exc))
    except Exception as exc:  # a fleet's failure is recorded, never raised into the worker
        log.exception("fleet %s failed", row.id)
        where = f"round {state.round}: " if state.round else ""
        _end(ctx, state, "failed", where + public_reason(exc))
    finally:
        state.touch()


def _run(ctx: Context, state: FleetState, fleet_id: str) -> Generator[float | None, None, bool]:
    """The rounds left, then (once) the personalization and the report; True at the end."""
    row = fleet_rows.get_row(ctx, fleet_id=fleet_id)
    plan = record.plan_of(ctx, row)
    loop = async_loop.rounds if plan.spec["mode"] == "async" else rounds
    if not (yield from loop(ctx, state, row, plan)):
        return False
    row = fleet_rows.get_row(ctx, fleet_id=fleet_id)
    if row.report is None:  # written with the personal heads: never twice after a restart
        finish.personalize_and_report(ctx, row, plan, state.stop.is_set)
    return True


def _wait_for_store(ctx: Context, state: FleetState, exc: StoreUnavailable,
                    tries: int) -> Generator[float, None, bool]:
    """After a round's store write failed: wait (yielding the seconds to the scheduler), then
    True to try the round again. Past ROUND_RETRIES tries the fleet shows "paused" with the
    reason until the store takes a write. False when stopped or cancelled meanwhile."""
    reason = "the blob store refuses writes: " + _public(exc)
    log.warning("fleet %s: %s (try %d)", state.fleet_id, reason, tries)
    wait = min(FIRST_RETRY_S * 2 ** (tries - 1), LONGEST_RETRY_S)
    if tries <= ROUND_RETRIES:
        yield wait
        if state.cancel.is_set():
            _end(ctx, state, "cancelled")
        return not _interrupted(state)
    if state.status != "paused":
        state.status, state.error = "paused", reason
        fleet_rows.set_status(ctx, state.fleet_id, "paused", reason)
        state.touch()
    while True:
        yield wait
        if _interrupted(state):
            if state.cancel.is_set():
                _end(ctx, state, "cancelled")
            return False
        try:
            ctx.store.check_writable()
            break
        except StoreUnavailable:
            wait = min(wait * 2, LONGEST_RETRY_S)
    state.status, state.error = "running", None
    fleet_rows.set_status(ctx, state.fleet_id, "running", None)
    state.touch()
    return True


def _interrupted(state: FleetState) -> bool:
    return state.stop.is_set() or state.cancel.is_set()


def _public(exc: StoreUnavailable) -> str:
    """The store's error without the server's paths or bucket URL."""
    return public_reason(exc).split(": ", 1)[-1]


def _end(ctx: Context, state: FleetState, status: str, error: str | None = None) -> None:
    state.status, state.error = status, error
    commit.drop_live_devices(ctx, state.fleet_id)  # next, from the heads it committed
    land(lambda: fleet_rows.finish(ctx, state.fleet_id, status, error),
         f"fleet {state.fleet_id} -> {status}", state.stop)
    state.touch()

