"""Build the Fleet from the settings, with its job executor wired to the job runner."""

from __future__ import annotations

import os
from functools import partial

from app.config import Settings
from app.db.engine import Database
from app.runtime.pool import SessionPool
from app.runtime.validator import ModelValidator
from app.services import jobs
from app.services.executor import LocalJobExecutor
from app.services.fleet import Fleet
from app.store import open_store


def build_fleet(settings: Settings) -> Fleet:
    """Every long-lived object, built once at start."""
    store = open_store(
        settings.store_url,
        endpoint=settings.s3_endpoint,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=settings.s3_secret_access_key,
    )
    fleet = Fleet(
        settings=settings,
        db=Database(settings.database_url),
        store=store,
        pool=SessionPool(settings.runtime_workers, settings.max_live_sessions),
        validator=ModelValidator(settings.validate_timeout_seconds),
    )
    fleet.jobs = LocalJobExecutor(partial(jobs.run, fleet),
                                  workers=settings.job_workers or (os.cpu_count() or 1))
    return fleet
