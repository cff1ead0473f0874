"""Build the Context from the settings: database, store, session pool, executor, workers."""

from __future__ import annotations

import os
from pathlib import Path

from app.config import Settings
from app.db.engine import Database
from app.executor.base import Executor
from app.executor.local import LocalExecutor
from app.runtime.interpreter import warm_up
from app.runtime.pool import SessionPool
from app.runtime.validator import ModelValidator
from app.services.context import Context
from app.services.fleet import fleet_workers
from app.services.job_run import job_workers
from app.store import BlobStore, open_store

__all__ = ["build_context", "warm_up"]


def build_context(settings: Settings) -> Context:
    """Every long-lived object, built once at start."""
    store = open_store(
        settings.store_url,
        endpoint=settings.s3_endpoint,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=settings.s3_secret_access_key,
    )
    ctx = Context(
        settings=settings,
        db=Database(settings.database_url, settings.db_timeout_seconds),
        store=store,
        pool=SessionPool(settings.runtime_workers, settings.max_live_sessions),
        validator=ModelValidator(settings.validate_timeout_seconds,
                                 idle_seconds=settings.probe_idle_seconds),
        executor=_executor(settings, store),
    )
    ctx.jobs = job_workers(ctx, settings.job_workers or (os.cpu_count() or 1))
    ctx.fleets = fleet_workers(ctx, settings.fleet_workers)
    return ctx


def _executor(settings: Settings, store: BlobStore) -> Executor:
    if settings.executor == "ray":
        from app.executor.ray_executor import RayExecutor  # imports Ray only when asked
        from app.executor.ray_worker import StoreConfig

        url = settings.store_url  # the workers' working directory is not ours: absolute paths
        if not url.startswith("s3://"):
            url = str(Path(url.removeprefix("file://")).resolve())
        return RayExecutor(StoreConfig(url, settings.s3_endpoint,
                                       settings.s3_region, settings.s3_access_key_id,
                                       settings.s3_secret_access_key),
                           address=settings.ray_address, actors=settings.ray_actors,
                           threads=settings.interpreter_threads)
    # One lane per core (each update is CPU-bound: more only fight over cores), and no more
    # than the interpreter threads the settings allow.
    return LocalExecutor(settings.work_path, store,
                         lanes=min(os.cpu_count() or 1, settings.runtime_workers),
                         interpreter_threads=settings.interpreter_threads)

