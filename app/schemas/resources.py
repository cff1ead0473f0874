"""Models, sessions and checkpoints as the API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from app.schemas import examples
from app.schemas.common import Body, Schema, SignatureOut, Text
from app.schemas.examples import example


class Model(Schema):
    """A base .tflite model."""

    model_config = example(examples.MODEL)

    id: str
    name: str
    sha256: str
    size_bytes: int
    created_at: datetime
    signatures: dict[str, SignatureOut]
    train_ms_per_example: float | None = Field(
        None, description="The train signature's time per example on this server, measured "
        "once at upload (a device class's slowdown multiplies it)")
    converted_from: dict[str, Any] | None = Field(
        None, description="For a model made by POST /v1/models/convert: the Keras file's "
        "sha256, its format, the options and the layers that train")


class Session(Schema):
    """One user's live interpreter on one base model."""

    model_config = example(examples.SESSION)

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

    model_config = example(examples.CHECKPOINT)

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


class SessionCreate(Body):
    """Start from the model's initial weights, or from one of the user's checkpoints."""

    model_config = example({"model_id": examples.MODEL_ID},
                           {"model_id": examples.MODEL_ID,
                            "checkpoint_id": examples.CHECKPOINT_ID})

    model_id: Text
    checkpoint_id: Text | None = None


class CheckpointCreate(Body):
    """An optional label for a manual checkpoint."""

    model_config = example({"label": "after 100 steps"})

    label: Text | None = Field(None, max_length=200)


class RestoreRequest(Body):
    """The checkpoint to load into the session."""

    model_config = example({"checkpoint_id": examples.CHECKPOINT_ID})

    checkpoint_id: Text
