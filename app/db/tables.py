"""ORM tables. Named tables.py so that "model" keeps meaning a .tflite file."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Integer, String, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

_id_lock = threading.Lock()
_last_ms = 0


def new_id(prefix: str) -> str:
    """An opaque id that sorts by creation time within this process (newest-first listing)."""
    global _last_ms
    with _id_lock:
        ms = max(int(time.time() * 1000), _last_ms + 1)
        _last_ms = ms
    return f"{prefix}_{ms:012x}{os.urandom(5).hex()}"


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes; SQLite hands back naive ones, which are UTC by construction."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value  # type: ignore[no-any-return]


class Base(DeclarativeBase):
    """Declarative base for every table."""


class ModelRow(Base):
    """A base .tflite model as uploaded."""

    __tablename__ = "models"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    signatures: Mapped[dict[str, Any]] = mapped_column(JSON)
    blob_key: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The train signature's time per example on this server, measured once at upload: the
    # device classes' slowdown multiplies it, so a fleet's timeline is the same on every run.
    train_ms_per_example: Mapped[float | None] = mapped_column(Float, nullable=True)
    # A model converted from a Keras file: that file's sha256 and the conversion's options.
    converted_from: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class SessionRow(Base):
    """One user's interpreter on one model; its weights are those of head_checkpoint_id."""

    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"), index=True)
    head_checkpoint_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    head_step: Mapped[int | None] = mapped_column(Integer, nullable=True)  # moves forward only
    steps: Mapped[int] = mapped_column(Integer, default=0)
    last_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CheckpointRow(Base):
    """A file written by a model's save signature, stored under the user's key prefix."""

    __tablename__ = "checkpoints"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    model_id: Mapped[str] = mapped_column(String(40), index=True)
    session_id: Mapped[str | None] = mapped_column(String(40), index=True, nullable=True)
    step: Mapped[int] = mapped_column(Integer)
    loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    kind: Mapped[str] = mapped_column(String(20))
    label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    blob_key: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    fleet_id: Mapped[str | None] = mapped_column(String(40), index=True, nullable=True)
    round: Mapped[int | None] = mapped_column(Integer, nullable=True)


class DatasetRow(Base):
    """A user's .npz of training examples, arrays named after a train signature's inputs."""

    __tablename__ = "datasets"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    num_examples: Mapped[int] = mapped_column(Integer)
    arrays: Mapped[dict[str, Any]] = mapped_column(JSON)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    blob_key: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JobRow(Base):
    """Epochs of a session over a dataset, run on the server."""

    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(40), index=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    dataset_id: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), index=True)
    epochs: Mapped[int] = mapped_column(Integer)
    batch_size: Mapped[int] = mapped_column(Integer)
    shuffle: Mapped[bool] = mapped_column(default=True)
    seed: Mapped[int] = mapped_column(BigInteger)
    epochs_done: Mapped[int] = mapped_column(Integer, default=0)
    steps_done: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer)
    epoch_loss: Mapped[list[float]] = mapped_column(JSON, default=list)
    checkpoint_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    start_checkpoint_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    error: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class KeyRow(Base):
    """A user's API key: only its sha256 is kept; the prefix finds it."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class FleetRow(Base):
    """A simulated population of devices trained in federated rounds."""

    __tablename__ = "fleets"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    num_clients: Mapped[int] = mapped_column(Integer)
    rounds_done: Mapped[int] = mapped_column(Integer, default=0)
    global_checkpoint_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    state_key: Mapped[str | None] = mapped_column(String(300), nullable=True)  # after a round
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # at the end
    last_round: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    # The plan's scalars (services/fleet/plan.py); its arrays are a blob under the fleet.
    plan: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    stopped_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class FleetRoundRow(Base):
    """One finished round of a fleet."""

    __tablename__ = "fleet_rounds"
    fleet_id: Mapped[str] = mapped_column(ForeignKey("fleets.id", ondelete="CASCADE"),
                                          primary_key=True)
    round: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(20))
    selected: Mapped[list[int]] = mapped_column(JSON)
    completed: Mapped[list[int]] = mapped_column(JSON)
    train_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    global_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    client_accuracy: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)
    checkpoint_id: Mapped[str] = mapped_column(String(40))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)
    virtual_start_s: Mapped[float] = mapped_column(Float)
    virtual_end_s: Mapped[float] = mapped_column(Float)
    outcomes: Mapped[dict[str, int]] = mapped_column(JSON)
    bytes_down: Mapped[int] = mapped_column(BigInteger)
    bytes_up: Mapped[int] = mapped_column(BigInteger)
    energy_j: Mapped[float] = mapped_column(Float)
    updates: Mapped[list[list[Any]]] = mapped_column(JSON)  # per selected client, by id
    privacy: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # DP figures
    staleness: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # async
    timings: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)  # wall s


class FleetClientRow(Base):
    """A device that has taken part in its fleet (rows are made on first selection)."""

    __tablename__ = "fleet_clients"
    fleet_id: Mapped[str] = mapped_column(ForeignKey("fleets.id", ondelete="CASCADE"),
                                          primary_key=True)
    client_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(String(40))
    rounds_participated: Mapped[int] = mapped_column(Integer, default=0)
    checkpoint_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    accuracy_global: Mapped[float | None] = mapped_column(Float, nullable=True)
    accuracy_personal: Mapped[float | None] = mapped_column(Float, nullable=True)
