"""Models, sessions and checkpoints as the API shows them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from app.schemas.common import Schema, SignatureOut, Text


class Model(Schema):
    """A base .tflite model."""

    id: str
    name: str
    sha256: str
    size_bytes: int
    created_at: datetime
    signatures: dict[str, SignatureOut]


class Session(Schema):
    """One user's live interpreter on one base model."""

    id: str
    user_id: str
    model_id: str
    created_at: datetime
    updated_at: datetime
    steps: int
    last_loss: float | None
    head_checkpoint_id: str | None = Field(
        None, description="The checkpoint holding the weights as of the last save or restore")
    live: bool = Field(False, description="Whether an interpreter is loaded in this process")


class Checkpoint(Schema):
    """A file written by the model's save signature."""

    id: str
    user_id: str
    model_id: str
    session_id: str | None
    step: int
    loss: float | None = None
    kind: str
    label: str | None
    sha256: str
    size_bytes: int
    created_at: datetime


class SessionCreate(BaseModel):
    """Start from the model's initial weights, or from one of the user's checkpoints."""

    model_id: Text
    checkpoint_id: Text | None = None


class CheckpointCreate(BaseModel):
    """An optional label for a manual checkpoint."""

    label: Text | None = Field(None, max_length=200)


class RestoreRequest(BaseModel):
    """The checkpoint to load into the session."""

    checkpoint_id: Text
