"""create_app(settings): the lifespan builds the database, store and runtime, and saves at exit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline
from prometheus_fastapi_instrumentator import Instrumentator
from starlette.types import Receive, Scope, Send

from app import allocator, metrics, quiet, single
from app.api import (
    bundles,
    checkpoints,
    convert,
    datasets,
    devices,
    fleets,
    health,
    jobs,
    keys,
    models,
    oip,
    privacy,
    sessions,
    ui,
)
from app.api.auth import principal
from app.api.body import BodyLimit
from app.api.deps import PlainPaths
from app.api.fastlane import FastLane
from app.api.openapi import SWAGGER_UI, TAGS, description, install_openapi
from app.api.problems import install_error_handlers
from app.config import Settings
from app.services import maintenance
from app.services.bootstrap import build_context, warm_up

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


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ASGI app; run with ``uvicorn --factory app.main:create_app``. Without settings
    (the factory call) it is this process's server: settings come from the environment and
    TensorFlow's start-up noise is kept off stderr."""
    single.refuse_many_workers()
    if settings is None:  # this process is the server
        quiet.filter_stderr()
        allocator.tune()
    settings = settings or Settings()
    _configure_logging(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        lock = single.lock_work_dir(settings.work_path)
        ctx = await asyncio.to_thread(build_context, settings)
        await asyncio.to_thread(warm_up)
        app.state.ctx = ctx
        app.state.stopping = asyncio.Event()
        _watch_sigterm(app.state.stopping)
        await maintenance.start(ctx)
        periodic = asyncio.create_task(maintenance.run_periodic(ctx))
        log.info("fleetlite ready: database %s, %s", ctx.db.engine.url.render_as_string(),
                 ctx.store.description)
        if settings.admin_token is None:
            log.warning("FLEETLITE_ADMIN_TOKEN is not set: the API runs OPEN, without keys")
        try:
            yield
        finally:
            periodic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await periodic
            await maintenance.shutdown(ctx)
            await asyncio.to_thread(ctx.close)
            lock.close()

    app = FastAPIOffline(  # Swagger UI (/docs) and ReDoc (/redoc) from packaged assets
        title="fleetlite",
        version="0.1.0",
        summary="A fleet of on-device TensorFlow Lite trainers, simulated behind one REST API.",
        description=description(settings),
        openapi_tags=TAGS,
        swagger_ui_parameters=SWAGGER_UI,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    install_openapi(app, settings)
    app.include_router(health.router)  # health answers without a key
    app.include_router(ui.router)  # pages: their own sign-in (a cookie), not the bearer
    for module in (convert, models, bundles, sessions, checkpoints, datasets, jobs, fleets,
                   devices, oip, keys, privacy):
        # Authentication on the router, so a route cannot be added without it.
        app.include_router(module.router, dependencies=[Depends(principal)])
    # Outermost last: request metrics, then body limits, then the routes.
    app.add_middleware(PlainPaths)  # a control character in a path: 404 before any route
    app.add_middleware(BodyLimit, settings=settings)
    Instrumentator(should_group_status_codes=True, excluded_handlers=["/metrics"],
                   ).add(metrics.instrumentation).instrument(app)
    app.__class__ = App  # fastapi-offline builds a plain FastAPI: ours asks the lane first
    assert isinstance(app, App)
    app.lane = FastLane(app.state)
    return app


class App(FastAPI):
    """The service's ASGI entry: the fast lane (app.api.fastlane) answers the per-step
    protocol calls it can before any of FastAPI's stack runs; FastAPI answers the rest."""

    lane: FastLane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not await self.lane.answer(scope, receive, send):
            await super().__call__(scope, receive, send)
