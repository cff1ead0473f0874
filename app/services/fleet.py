"""The objects built once at start and handed to every use case."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from app.config import Settings
from app.db.engine import Database
from app.runtime.pool import SessionPool
from app.runtime.signatures import Signatures
from app.runtime.validator import ModelValidator
from app.store import BlobStore, open_store


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
    models: dict[str, LoadedModel] = field(default_factory=dict)
    models_lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> None:
        """Release threads, the probe child and connections."""
        self.pool.shutdown()
        self.validator.close()
        self.db.dispose()


def build_fleet(settings: Settings) -> Fleet:
    """Build every long-lived object from the settings."""
    store = open_store(
        settings.store_url,
        endpoint=settings.s3_endpoint,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=settings.s3_secret_access_key,
    )
    return Fleet(
        settings=settings,
        db=Database(settings.database_url),
        store=store,
        pool=SessionPool(settings.runtime_workers),
        validator=ModelValidator(settings.validate_timeout_seconds),
    )
