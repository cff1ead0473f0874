"""The objects built once at start and handed to every use case."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from app.config import Settings
from app.db.engine import Database
from app.runtime.pool import SessionPool
from app.runtime.signatures import Signatures
from app.runtime.validator import ModelValidator
from app.services.executor import JobExecutor
from app.services.keyring import KeyRing
from app.store import BlobStore


@dataclass(frozen=True)
class LoadedModel:
    """A base model's bytes and signatures, shared by every session on it."""

    id: str
    data: bytes
    signatures: Signatures


@dataclass
class Fleet:
    """Settings, database, blob store, live sessions and the model validator."""

    settings: Settings
    db: Database
    store: BlobStore
    pool: SessionPool
    validator: ModelValidator
    jobs: JobExecutor = field(init=False)
    keys: KeyRing = field(default_factory=KeyRing)
    jobs_resumed: bool = False
    models: dict[str, LoadedModel] = field(default_factory=dict)
    models_lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> None:
        """Release threads, the probe child and connections."""
        self.pool.shutdown()
        self.validator.close()
        self.db.dispose()

