"""A fleet's accuracy: the global model on the pooled test set, and on every client's own
held-out examples (all clients at once, then split per client)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from app.runtime.evaluate import predict, quantiles
from app.runtime.interpreter import LiteSession
from app.services.context import Context
from app.services.fleet.inputs import FleetData
from app.services.fleet.plan import FleetPlan


@dataclass
class RoundAccuracy:
    """The global model's accuracy after a round."""

    global_accuracy: float | None
    client_quantiles: dict[str, float] | None
    per_client: np.ndarray | None = field(default=None, repr=False)  # NaN: no holdout


class Evaluator:
    """The fleet driver's own interpreter (not a session): global weights in, accuracy out.
    Used by the driver thread only."""

    def __init__(self, ctx: Context, plan: FleetPlan, data: FleetData) -> None:
        self.plan, self.data, self.scratch = plan, data, ctx.settings.work_path
        self.threads = ctx.settings.interpreter_threads
        self._lite: LiteSession | None = None  # built on the first measurement
        self.fixed = plan.infer_batch
        self._holdout: tuple[np.ndarray, np.ndarray] | None = None  # (indices, client of each)

    def round_accuracy(self, weights: bytes) -> RoundAccuracy:
        """Accuracy of these weights on the test set and on each client's holdout (nothing
        for `local`, whose devices share no model)."""
        plan, test = self.plan, self.data.test
        if plan.output is None or plan.spec["strategy"]["name"] == "local":
            return RoundAccuracy(None, None)  # no accuracy to measure; no global model
        if test is None and not self._holds_out():  # nothing to measure it on
            return RoundAccuracy(None, None)
        self._restore(weights)
        global_acc = None
        if test is not None:
            inputs = {n: test[n] for n in plan.infer_inputs}
            hit = self._predict(inputs) == test["__classes__"]
            global_acc = float(hit.mean()) if hit.size else None
        per_client = self.client_accuracy()
        shown = per_client[~np.isnan(per_client)] if per_client is not None else np.zeros(0)
        return RoundAccuracy(global_acc, quantiles(shown), per_client)

    def client_accuracy(self) -> np.ndarray | None:
        """Per client, the restored weights' accuracy on its holdout (NaN: none held out)."""
        plan, data = self.plan, self.data
        if data.classes is None or not self._holds_out():
            return None
        idx, owner = self.holdout()
        inputs = {n: data.arrays[n][idx] for n in plan.infer_inputs}
        hit = (self._predict(inputs) == data.classes[idx]).astype(np.float64)
        n = plan.num_clients
        right = np.bincount(owner, weights=hit, minlength=n)
        count = np.bincount(owner, minlength=n).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, right / count, np.nan)

    def holdout(self) -> tuple[np.ndarray, np.ndarray]:
        """Every client's held-out examples, and the client of each (built once)."""
        if self._holdout is None:
            part = self.plan.partition
            parts = [part[c].holdout for c in np.flatnonzero(part.num_holdout)]
            idx = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
            self._holdout = (idx, part.client_of[idx])
        return self._holdout

    def _holds_out(self) -> bool:
        return self.data.classes is not None and bool(self.plan.partition.num_holdout.any())

    @property
    def lite(self) -> LiteSession:
        """The evaluator's interpreter (a fleet with nothing to measure never builds one)."""
        if self._lite is None:
            self._lite = LiteSession(self.data.model, self.threads)
        return self._lite

    def _restore(self, weights: bytes) -> None:
        path = self.scratch / f"eval-{id(self)}.ckpt"
        try:
            path.write_bytes(weights)
            self.lite.restore(path)
        finally:
            path.unlink(missing_ok=True)

    def _predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        assert self.plan.output is not None
        return predict(lambda x: self.lite.run("infer", x), inputs, self.plan.output,
                       self.fixed)
