"""The objects built once at start and handed to every use case."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from app.config import Settings
from app.db.engine import Database
from app.executor.base import Executor
from app.runtime.pool import SessionPool
from app.runtime.signatures import Signatures
from app.runtime.validator import ModelValidator
from app.services.keyring import KeyRing
from app.services.persister import Persister
from app.store import BlobStore

if TYPE_CHECKING:
    from app.services.fleet.schedule import FairWorkers
    from app.services.progress import JobState
    from app.services.workers import Workers


@dataclass(frozen=True)
class LoadedModel:
    """A base model's bytes and signatures, shared by every session on it."""

    id: str
    data: bytes
    signatures: Signatures


@dataclass
class Context:
    """What every use case is handed: settings, database, blob store, live sessions, the model
    validator, the executor that runs training, the job workers and the persister. Built
    once at start (services.bootstrap)."""

    settings: Settings
    db: Database
    store: BlobStore
    pool: SessionPool
    validator: ModelValidator
    executor: Executor
    persister: Persister = field(default_factory=Persister)
    jobs: Workers[JobState] = field(init=False)
    fleets: FairWorkers = field(init=False)
    keys: KeyRing = field(default_factory=KeyRing)
    jobs_resumed: bool = False
    fleets_resumed: bool = False
    models: dict[str, LoadedModel] = field(default_factory=dict)
    initial_weights: dict[str, bytes] = field(default_factory=dict)  # by model id
    models_lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> None:
        """Release threads, the probe child and connections (jobs were stopped first)."""
        self.persister.shutdown()
        self.executor.shutdown()
        self.pool.shutdown()
        self.validator.close()
        self.db.dispose()
