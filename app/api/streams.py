"""Event streams of long work (jobs, fleets): a `progress` event at every change of its
live state, then one `end` with the final state; woken by the work's own progress
(app.services.progress), never by polling the database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from app.services.progress import Progress
from app.services.workers import ACTIVE

KEEPALIVE_SECONDS = 15  # a comment line this often keeps proxies from closing the stream
ORPHAN_POLL_SECONDS = 1.0  # work queued by an earlier process, not yet picked up here
# The default least time between two progress events of a stream (the setting
# event_interval_seconds): a fleet touches its progress at every client update (hundreds a
# second), and rendering each one for every subscriber took the GIL from the training
# threads. The `end` event is never held back.
MIN_EVENT_SECONDS = 0.2


def progress_stream(first: Any, read: Callable[[], Any], render: Callable[[Any], Any],
                    state: Callable[[], Progress | None],
                    stopping: asyncio.Event, *,
                    interval: float = MIN_EVENT_SECONDS) -> EventSourceResponse:
    """The stream of one piece of work: `read()` its view (off the event loop), `render`
    it as JSON-able data, `state()` its live progress in this process, if any; progress
    events at least `interval` seconds apart."""

    async def events() -> AsyncIterator[ServerSentEvent]:
        loop = asyncio.get_running_loop()
        view, seen, sent_at = first, -1, -interval
        while True:
            data = orjson.dumps(render(view)).decode()
            if view.status not in ACTIVE:
                yield ServerSentEvent(data, event="end")
                return
            live = state()
            if live is None or live.version != seen:
                seen = live.version if live else -1
                sent_at = loop.time()
                yield ServerSentEvent(data, event="progress")
            if stopping.is_set():
                return  # the server is stopping: the work resumes after the restart
            if live is None:
                await asyncio.sleep(ORPHAN_POLL_SECONDS)
            else:
                await live.wait_change(seen, timeout=ORPHAN_POLL_SECONDS, also=stopping)
                await _hold_back(live, sent_at + interval - loop.time(), stopping)
            if stopping.is_set():
                return
            view = await run_in_threadpool(read)

    return EventSourceResponse(events(), ping=KEEPALIVE_SECONDS,
                               headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _hold_back(live: Progress, seconds: float, stopping: asyncio.Event) -> None:
    """Wait out the rest of the minimum interval between events, unless the work ends
    (its `end` goes out at once) or the server stops."""
    step = 0.02
    while seconds > 0 and getattr(live, "status", None) in ACTIVE and not stopping.is_set():
        await asyncio.sleep(min(step, seconds))
        seconds -= step
