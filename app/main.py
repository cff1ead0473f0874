"""create_app(settings): the lifespan builds the database, store and runtime, and saves at exit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from starlette.types import Receive, Scope, Send

from app.api import checkpoints, datasets, health, jobs, keys, models, oip, sessions
from app.api.auth import principal
from app.api.fastlane import FastLane
from app.api.limits import BodyLimit
from app.api.problems import install_error_handlers
from app.config import Settings
from app.runtime.interpreter import warm_up
from app.services import maintenance
from app.services.bootstrap import build_fleet

log = logging.getLogger("fleetlite")


def _configure_logging(level: str) -> None:
    root = logging.getLogger("fleetlite")
    root.setLevel(level.upper())
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)


def _watch_sigterm(stopping: asyncio.Event) -> None:
    """Chain onto uvicorn's SIGTERM/SIGINT handlers so event streams end at once: uvicorn
    waits for open responses before the shutdown that saves sessions and stops jobs."""
    if threading.current_thread() is not threading.main_thread():
        return  # embedded (tests): the host stops the server itself
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: object, previous: object = previous) -> None:
            loop.call_soon_threadsafe(stopping.set)
            if callable(previous):
                previous(signum, frame)

        signal.signal(sig, handler)


class FleetliteAPI(FastAPI):
    """FastAPI, with the per-step protocol calls answered first by the fast lane."""

    def __init__(self, lane: FastLane, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lane = lane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fleet = getattr(self.state, "fleet", None)
        if not await self.lane(fleet, scope, receive, send):
            await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ASGI app; run with ``uvicorn --factory app.main:create_app``."""
    settings = settings or Settings()
    _configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        fleet = await asyncio.to_thread(build_fleet, settings)
        fleet.validator.start()  # its TensorFlow import overlaps ours
        await asyncio.to_thread(warm_up)
        app.state.fleet = fleet
        app.state.stopping = asyncio.Event()
        _watch_sigterm(app.state.stopping)
        await maintenance.start(fleet)
        periodic = asyncio.create_task(maintenance.run_periodic(fleet))
        log.info("fleetlite ready: database %s, %s", fleet.db.engine.url.render_as_string(),
                 fleet.store.description)
        if settings.admin_token is None:
            log.warning("FLEETLITE_ADMIN_TOKEN is not set: the API runs OPEN, without keys")
        try:
            yield
        finally:
            periodic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await periodic
            await maintenance.shutdown(fleet)
            await asyncio.to_thread(fleet.close)

    app = FleetliteAPI(
        FastLane(settings.max_request_bytes),
        title="fleetlite",
        version="0.1.0",
        summary="A fleet of on-device TensorFlow Lite trainers, simulated behind one REST API.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(health.router)  # health answers without a key
    for module in (models, sessions, checkpoints, datasets, jobs, oip, keys):
        # Authentication on the router, so a route cannot be added without it.
        app.include_router(module.router, dependencies=[Depends(principal)])
    app.add_middleware(BodyLimit, default=settings.max_request_bytes,
                       models=settings.max_model_bytes, datasets=settings.max_dataset_bytes)
    return app
