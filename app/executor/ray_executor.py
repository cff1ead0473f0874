"""The executor on Ray: runner work on a fixed pool of actors (one CPU each), the API process
aggregating, writing rows and serving.

A client's updates go to the same actor while it lives (routed by a hash of its session),
so its interpreter stays warm there; everything travels by store key (models, global and
own checkpoints, datasets: S3 in a cluster) or by value (the plan, the results). An actor
that dies (killed, or its process) costs a retry of its work on a new one: an update is a
pure function of its inputs, so the retry gives the same bits. A job streams its epochs
back; each one's weights are restored into the session in the API process, so infer there
answers from the job's last epoch.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from app.executor.base import TrainingWork
from app.executor.ray_worker import EpochDone, RemoteJob, StoreConfig, UpdateWorker
from app.executor.update import ClientUpdate, Interrupted, Outcome
from app.runtime.runner import Hooks
from app.runtime.session import Snapshot

log = logging.getLogger("fleetlite.ray")
WAIT_S = 0.25  # how often a wait looks at the stop flag
RETRIES = 3


class RayExecutor:
    """A pool of UpdateWorker actors on a Ray cluster (or a local Ray it starts)."""

    def __init__(self, store: StoreConfig, *, address: str | None, actors: int = 0,
                 threads: int = 1) -> None:
        import ray

        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING, ignore_reinit_error=True,
                     num_cpus=None if address else os.cpu_count())
        # One CPU each; `cancel` runs in its own group, beside the work it stops.
        self._cls = ray.remote(num_cpus=1, concurrency_groups={"control": 1},  # type: ignore[call-overload]
                               max_restarts=0)(UpdateWorker)
        self._store, self._threads = store, threads
        n = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.actors = [self._spawn() for _ in range(n)]

    def _spawn(self) -> Any:
        return self._cls.remote(self._store, self._threads)

    def _route(self, session_id: str, attempt: int = 0) -> int:
        return (zlib.crc32(session_id.encode()) + attempt) % len(self.actors)

    def _replace(self, index: int, dead: Any) -> None:
        if self.actors[index] is dead:
            log.warning("ray worker %d died; starting a new one", index)
            self.actors[index] = self._spawn()

    def run_updates(self, updates: Sequence[ClientUpdate], stopped: Callable[[], bool]
                    ) -> Iterator[Outcome]:
        """Every update on its client's actor; results as they end; a dead actor's updates
        go again, to a new actor."""
        ray = self.ray
        pending: dict[Any, tuple[ClientUpdate, int, int, Any]] = {}

        def submit(update: ClientUpdate, attempt: int) -> None:
            index = self._route(update.session_id, attempt)
            actor = self.actors[index]
            pending[actor.update.remote(update)] = (update, attempt, index, actor)

        for update in updates:
            submit(update, 0)
        try:
            while pending:
                if stopped():
                    raise Interrupted("stopping")
                done, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_S)
                for ref in done:
                    update, attempt, index, actor = pending.pop(ref)
                    try:
                        yield ray.get(ref)
                    except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError):
                        if attempt >= RETRIES:
                            raise
                        self._replace(index, actor)
                        submit(update, attempt + 1)
        finally:
            for ref in pending:
                ray.cancel(ref)

    def train(self, work: TrainingWork, hooks: Hooks[Snapshot]) -> bool:
        """A job's epochs on the session's actor, streamed back; each adopted by the live
        session here (so it serves the job's last epoch) and handed to the hooks."""
        ray, live, plan = self.ray, work.live, work.plan
        job = RemoteJob(key=live.id, session_id=live.id, model_key=work.model_key,
                        dataset_key=work.dataset_key, plan=plan, start_key=work.start_key)
        for attempt in range(RETRIES + 1):
            index = self._route(live.id, attempt)
            actor = self.actors[index]
            try:
                for ref in actor.train_job.options(num_returns="streaming").remote(job):
                    while not ray.wait([ref], timeout=WAIT_S)[0]:
                        if hooks.stopped():
                            actor.cancel.options(concurrency_group="control").remote(job.key)
                    epoch: EpochDone = ray.get(ref)
                    hooks.progress(epoch.epoch, [])
                    snap = live.strand.submit(live.adopt_weights, epoch.data, epoch.losses,
                                              work.scratch).result()
                    hooks.progress(epoch.epoch, epoch.losses)
                    hooks.epoch_end(epoch.epoch, epoch.mean_loss, snap)
                    job = RemoteJob(key=job.key, session_id=job.session_id,
                                    model_key=job.model_key, dataset_key=job.dataset_key,
                                    plan=replace(plan, first_epoch=epoch.epoch),
                                    start=epoch.data)
                return job.plan.first_epoch >= plan.epochs or not hooks.stopped()
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError):
                if attempt >= RETRIES:
                    raise
                self._replace(index, actor)  # go on from the last epoch that came back
        return False

    def shutdown(self) -> None:
        """Let the actors go (the cluster stays, or the local Ray ends with the process)."""
        for actor in self.actors:
            self.ray.kill(actor)
