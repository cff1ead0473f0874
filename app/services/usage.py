"""What queued, running or paused work still needs: a dataset, model or checkpoint that a
fleet or job uses cannot be deleted until it has ended (409 naming the user of it). Once it
has ended, its record no longer reads its inputs, so they may go."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.tables import FleetClientRow, FleetRow, JobRow, SessionRow
from app.errors import Conflict
from app.services.workers import ACTIVE


def check_dataset(db: Session, dataset_id: str) -> None:
    """409 while an active fleet trains or tests on the dataset, or an active job trains on it."""
    for fleet in _active_fleets(db):
        if dataset_id in (fleet.spec.get("dataset_id"), fleet.spec.get("test_dataset_id")):
            raise Conflict(f"dataset '{dataset_id}' is used by fleet '{fleet.id}' "
                           f"({fleet.status}); delete it once the fleet has ended")
    job = db.scalar(select(JobRow.id).where(JobRow.dataset_id == dataset_id,
                                            JobRow.status.in_(ACTIVE)).limit(1))
    if job:
        raise Conflict(f"dataset '{dataset_id}' is used by job '{job}'; delete it once the job "
                       "has ended")


def check_model(db: Session, model_id: str) -> None:
    """409 while an active fleet trains the model."""
    for fleet in _active_fleets(db):
        if fleet.spec.get("model_id") == model_id:
            raise Conflict(f"model '{model_id}' is used by fleet '{fleet.id}' ({fleet.status}); "
                           "delete it once the fleet has ended")


def check_checkpoint(db: Session, checkpoint_id: str) -> None:
    """409 while an active fleet depends on the checkpoint (its globals, its devices' own
    checkpoints) or an active job does (where it started, its epochs)."""
    for fleet in _active_fleets(db):
        if checkpoint_id in (fleet.global_checkpoint_ids or []):
            raise Conflict(f"checkpoint '{checkpoint_id}' is a global checkpoint of fleet "
                           f"'{fleet.id}' ({fleet.status}); delete it once the fleet has ended")
    device = db.scalar(select(FleetClientRow.fleet_id).join(
        FleetRow, FleetRow.id == FleetClientRow.fleet_id).where(
        FleetClientRow.checkpoint_id == checkpoint_id, FleetRow.status.in_(ACTIVE)).limit(1))
    if device:
        raise Conflict(f"checkpoint '{checkpoint_id}' holds a device's weights in fleet "
                       f"'{device}'; delete it once the fleet has ended")
    for job in db.scalars(select(JobRow).join(SessionRow, SessionRow.id == JobRow.session_id)
                          .where(JobRow.status.in_(ACTIVE))):
        if checkpoint_id == job.start_checkpoint_id or checkpoint_id in (job.checkpoint_ids or []):
            raise Conflict(f"checkpoint '{checkpoint_id}' is used by job '{job.id}'; delete it "
                           "once the job has ended")


def _active_fleets(db: Session) -> list[FleetRow]:
    return list(db.scalars(select(FleetRow).where(FleetRow.status.in_(ACTIVE))))
