"""All settings in one place, read from FLEETLITE_* environment variables."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Service configuration, validated once at start."""

    model_config = SettingsConfigDict(env_prefix="FLEETLITE_", env_file=None, extra="ignore")

    database_url: str = Field(
        "sqlite:///./var/fleetlite.db",
        description="SQLAlchemy URL: sqlite:///path or postgresql+psycopg://user@host/db",
    )
    store_url: str = Field(
        "./var/store",
        description="Blob store: a local directory (path or file:// URL) or s3://bucket[/prefix]",
    )
    s3_endpoint: str | None = Field(None, description="S3 endpoint URL (MinIO, moto)")
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    work_dir: str = Field("./var/tmp", description="Scratch directory for checkpoint files")
    max_model_bytes: int = Field(64 * 1024 * 1024, gt=0, description="Largest .tflite upload")
    max_dataset_bytes: int = Field(256 * 1024 * 1024, gt=0, description="Largest .npz upload")
    max_dataset_arrays: int = Field(256, gt=0, description="Arrays in one .npz upload (422 "
                                    "above, checked before any is read)")
    event_interval_seconds: float = Field(
        0.2, ge=0, description="Least time between two progress events of a job or fleet "
        "stream (the end event is never held back)")
    max_request_bytes: int = Field(
        32 * 1024 * 1024, gt=0, description="Largest JSON or binary tensor request body"
    )
    autosave_seconds: float = Field(
        30.0, gt=0, description="Checkpoint sessions with unsaved steps this often"
    )
    keep_autosaves: int = Field(3, ge=1, description="Autosaves kept per session (older pruned)")
    flush_seconds: float = Field(2.0, gt=0, description="Write step counters to the DB this often")
    max_live_sessions: int = Field(
        0, ge=0, description="Interpreters kept in memory (0: no cap); the least recently "
        "used idle session is saved and dropped, and loads again on its next call")
    inline_call_ms: float = Field(
        1.0, ge=0, description="Calls on an idle session that average under this many ms run "
        "on the event loop instead of a thread (0: always a thread)")
    max_live_sessions_per_user: int = Field(
        0, ge=0, description="A user's interpreters in memory (0: no cap); over it the user's "
        "least recently used idle session is evicted, and 429 if all are busy")
    max_jobs_per_user: int = Field(4, ge=0, description="Queued or running jobs per user "
                                   "(0: no cap); 429 above")
    max_fleets_per_user: int = Field(4, ge=0, description="Queued, running or paused fleets "
                                     "per user (0: no cap); 429 above")
    max_fleet_updates: int = Field(1_000_000, ge=0, description="Largest rounds x "
                                   "clients_per_round of one fleet (0: no limit); 422 above")
    max_tensor_elements: int = Field(
        16 * 1024 * 1024, gt=0, description="Elements in all input tensors of one call (422 above)")
    max_batch_size: int = Field(4096, gt=0, description="Largest batch in one call or job (422)")
    interpreter_threads: int = Field(1, ge=1, description="Threads inside each interpreter")
    runtime_threads: int = Field(
        0, ge=0, description="Threads that run interpreter calls (0: 2 x CPU cores, at least 4)"
    )
    job_workers: int = Field(0, ge=0, description="Jobs that run at once (0: one per CPU core)")
    fleet_workers: int = Field(1, ge=1, description="Fleets that run at once (each uses every "
                               "core for its client updates)")
    executor: Literal["local", "ray"] = Field(
        "local", description="Where client updates and training jobs run: this process's "
        "threads, or a pool of Ray actors")
    ray_address: str | None = Field(None, description="A Ray cluster's address (ray-head:6379);"
                                    " unset with executor=ray: a local Ray on this machine")
    ray_actors: int = Field(0, ge=0, description="Ray actors (one CPU each); 0: one per CPU "
                            "of the cluster")
    db_timeout_seconds: float = Field(
        5.0, gt=0, description="Longest a PostgreSQL transaction may wait before the request "
        "answers 503 (a frozen server included)")
    validate_timeout_seconds: float = Field(
        60.0, gt=0, description="Time allowed for the smoke run of an uploaded model"
    )
    probe_idle_seconds: float = Field(
        60.0, ge=0, description="The model-probe child (TensorFlow, ~0.6 GB) exits after this "
        "long without an upload; the next upload starts it again (0: it stays once started)")
    admin_token: SecretStr | None = Field(
        None, description="When set, every route but health needs a bearer key; this token "
        "is the admin's")
    log_level: str = "info"

    @field_validator("store_url")
    @classmethod
    def _store_scheme(cls, v: str) -> str:
        if "://" in v and not v.startswith(("file://", "s3://")):
            raise ValueError("store_url must be a path, file:// or s3://")
        return v

    @cached_property
    def runtime_workers(self) -> int:
        """Threads for interpreter calls (they release the GIL, so more than cores is fine)."""
        return self.runtime_threads or max(4, 2 * (os.cpu_count() or 1))

    @cached_property
    def work_path(self) -> Path:
        """The scratch directory, created on first use."""
        p = Path(self.work_dir)
        p.mkdir(parents=True, exist_ok=True)
        return p
