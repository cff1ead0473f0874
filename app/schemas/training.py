"""Datasets and jobs as the API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from app.schemas import examples
from app.schemas.common import Body, Schema, Text
from app.schemas.examples import example

# The largest integer every JSON parser holds exactly (JavaScript's too): above it a seed could
# arrive as a different number, so the schema and the server both stop there.
MAX_SEED = 2**53 - 1


class Dataset(Schema):
    """A user's .npz of training examples."""

    model_config = example(examples.DATASET)

    id: str
    user_id: str
    name: str
    num_examples: int
    arrays: dict[str, Any]
    sha256: str
    size_bytes: int
    created_at: datetime


class JobCreate(Body):
    """Epochs of the session's train signature over one of the user's datasets."""

    model_config = example(examples.JOB_CREATE)

    dataset_id: Text
    epochs: int = Field(ge=1, le=10_000)
    batch_size: int = Field(ge=1, le=65_536)
    shuffle: bool = True
    seed: int | None = Field(None, ge=0, le=MAX_SEED,
                             description="Shuffle seed; the same seed gives the same batches")


class JobProgress(BaseModel):
    """Where a job is: the epoch under way (1-based), steps done of all steps."""

    model_config = example(examples.PROGRESS)

    epoch: int
    step: int
    total_steps: int


class Job(Schema):
    """A training job and its progress."""

    model_config = example(examples.JOB)

    id: str
    session_id: str
    user_id: str
    dataset_id: str
    status: str = Field(description='"queued" | "running" | "succeeded" | "failed" | "cancelled"')
    epochs: int
    batch_size: int
    shuffle: bool
    seed: int
    progress: JobProgress
    metrics: dict[str, list[float | None]]
    checkpoint_ids: list[str]
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    links: dict[str, str] = Field(default_factory=dict)

    def model_post_init(self, _: Any) -> None:
        self.links = {"self": f"/v1/jobs/{self.id}", "events": f"/v1/jobs/{self.id}/events",
                      "loss_svg": f"/v1/jobs/{self.id}/loss.svg",
                      "session": f"/v1/sessions/{self.session_id}"}
