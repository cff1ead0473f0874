"""Build the Context from the settings: database, store, session pool, executor, workers."""

from __future__ import annotations

import os

from app.config import Settings
from app.db.engine import Database
from app.executor.local import LocalExecutor
from app.runtime.interpreter import warm_up
from app.runtime.pool import SessionPool
from app.runtime.validator import ModelValidator
from app.services.context import Context
from app.services.job_run import JobWorkers
from app.store import open_store

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
        validator=ModelValidator(settings.validate_timeout_seconds),
        executor=LocalExecutor(settings.work_path),
    )
    ctx.jobs = JobWorkers(ctx, workers=settings.job_workers or (os.cpu_count() or 1))
    return ctx
