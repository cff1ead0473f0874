"""A fleet's plan: everything its spec and inputs decide, fixed once when the fleet is created.

The plan is typed and immutable. It is written with the fleet (its scalars as JSON in the
row, its per-client arrays in one blob under the fleet's prefix) and read back by the run,
a resume after a restart and every read alike, so none of them looks at the dataset, the
model's row or the device catalogue again: deleting an input after the fleet has ended
changes nothing it shows, and a catalogue that changes does not change an old fleet.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from app.executor.cache import Lru
from app.federated import devices as fdevices
from app.federated import faults as ffaults
from app.federated.partition import Partition
from app.federated.strategies import Strategy, make_strategy

FORMAT = 1
PLAN_BLOB = "plan.npz"


@dataclass(frozen=True, eq=False)
class Inputs:
    """A blob the fleet reads while it runs, by id, key and sha256 (checked when read)."""

    id: str
    key: str
    sha256: str
    size_bytes: int


@dataclass(frozen=True, eq=False)
class FleetPlan:
    """What one fleet trains on and how; the same for its run, its resume and its reads."""

    spec: Mapping[str, Any]  # with every default resolved, as the Fleet shows it
    model: Inputs
    dataset: Inputs
    test: Inputs | None
    train_inputs: tuple[str, ...]
    infer_inputs: tuple[str, ...]
    label: str | None
    output: str | None  # the infer output whose argmax is the predicted class
    num_classes: int
    fixed_batch: bool  # the train signature's batch dimension is fixed
    infer_batch: int | None  # the infer signature's fixed batch, if any
    variables: tuple[str, ...]  # what the model's save signature writes
    keep: tuple[str, ...]  # prefixes each device keeps: personal, or every one for `local`
    faults: ffaults.Faults | None
    faulty: frozenset[int]
    devices: fdevices.DeviceSpec
    device_classes: tuple[fdevices.DeviceClass, ...]  # resolved against the model's speed
    class_index: np.ndarray  # each client's device class
    partition: Partition
    label_counts: np.ndarray | None  # [clients, classes]: each client's examples per class
    examples: np.ndarray  # examples one update trains, per client (for the clock)

    @property
    def rounds(self) -> int:
        """Rounds the fleet runs."""
        return int(self.spec["rounds"])

    @property
    def num_clients(self) -> int:
        """Devices of the population."""
        return len(self.partition)

    def strategy(self) -> Strategy:
        """A fresh strategy object as the spec says."""
        return make_strategy(self.spec["strategy"])

    @property
    def shared(self) -> tuple[str, ...]:
        """The variables the strategy aggregates."""
        return tuple(v for v in self.variables if not kept(v, self.keep))

    @property
    def personal(self) -> tuple[str, ...]:
        """The variables each device keeps (FedPer's personal layers)."""
        return tuple(v for v in self.variables if kept(v, self.keep))

    def record(self) -> tuple[dict[str, Any], bytes]:
        """The plan as it is stored: JSON scalars (for the row) and the arrays' blob."""
        meta = {
            "format": FORMAT, "model": _inputs_json(self.model),
            "dataset": _inputs_json(self.dataset),
            "test": _inputs_json(self.test) if self.test else None,
            "train_inputs": list(self.train_inputs), "infer_inputs": list(self.infer_inputs),
            "label": self.label, "output": self.output, "num_classes": self.num_classes,
            "fixed_batch": self.fixed_batch, "infer_batch": self.infer_batch,
            "variables": list(self.variables), "keep": list(self.keep),
            "device_classes": [{"name": c.name, **c.figures()} for c in self.device_classes],
            "keys": list(self.partition.keys) if self.partition.keys is not None else None,
        }
        part = self.partition
        arrays = {"client_of": part.client_of, "num_holdout": part.num_holdout,
                  "faulty": np.array(sorted(self.faulty), dtype=np.int64),
                  "class_index": self.class_index, "examples": self.examples}
        if self.label_counts is not None:
            arrays["label_counts"] = self.label_counts
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return meta, buf.getvalue()

    @classmethod
    def from_record(cls, spec: Mapping[str, Any], meta: Mapping[str, Any],
                    blob: bytes) -> FleetPlan:
        """The plan that `record()` wrote."""
        if meta.get("format") != FORMAT:
            raise ValueError(f"unknown fleet plan format {meta.get('format')!r}")
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        client_of = arrays["client_of"]
        n = len(arrays["num_holdout"])
        keys = tuple(meta["keys"]) if meta["keys"] is not None else None
        counts = np.bincount(client_of[client_of >= 0], minlength=n)  # -1: held by no client
        part = Partition(client_of, counts, arrays["num_holdout"],
                         keys, int(spec["seed"]))
        faults = spec.get("faults")
        return cls(
            spec=freeze(spec), model=_inputs(meta["model"]), dataset=_inputs(meta["dataset"]),
            test=_inputs(meta["test"]) if meta["test"] else None,
            train_inputs=tuple(meta["train_inputs"]), infer_inputs=tuple(meta["infer_inputs"]),
            label=meta["label"], output=meta["output"], num_classes=int(meta["num_classes"]),
            fixed_batch=bool(meta["fixed_batch"]), infer_batch=meta["infer_batch"],
            variables=tuple(meta["variables"]), keep=tuple(meta["keep"]),
            faults=ffaults.make_faults(faults) if faults else None,
            faulty=frozenset(int(c) for c in arrays["faulty"]),
            devices=fdevices.parse_devices(dict(spec["devices"])),
            device_classes=tuple(fdevices.DeviceClass(**c) for c in meta["device_classes"]),
            class_index=_frozen(arrays["class_index"]), partition=part,
            label_counts=_frozen(arrays["label_counts"]) if "label_counts" in arrays else None,
            examples=_frozen(arrays["examples"]))


def kept(name: str, keep: tuple[str, ...]) -> bool:
    """Whether a variable stays on the device."""
    return any(name.startswith(prefix) for prefix in keep)


def freeze(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    """A read-only deep copy of a JSON spec."""
    def walk(v: Any) -> Any:
        if isinstance(v, Mapping):
            return MappingProxyType({k: walk(x) for k, x in v.items()})
        if isinstance(v, list | tuple):
            return tuple(walk(x) for x in v)
        return v
    return walk(json.loads(json.dumps(thaw(spec))))  # type: ignore[no-any-return]


def thaw(spec: Any) -> Any:
    """A frozen spec as plain JSON values (dicts and lists)."""
    if isinstance(spec, Mapping):
        return {k: thaw(v) for k, v in spec.items()}
    if isinstance(spec, list | tuple):
        return [thaw(v) for v in spec]
    return spec


def _inputs_json(i: Inputs) -> dict[str, Any]:
    return {"id": i.id, "key": i.key, "sha256": i.sha256, "size_bytes": i.size_bytes}


def _inputs(d: Mapping[str, Any]) -> Inputs:
    return Inputs(str(d["id"]), str(d["key"]), str(d["sha256"]), int(d["size_bytes"]))


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a)
    a.flags.writeable = False
    return a


class PlanCache(Lru[FleetPlan]):
    """Plans read back from the store, by fleet id (immutable, so any copy is right)."""

    def drop(self, fleet_id: str) -> None:
        """Forget a deleted fleet's plan."""
        with self._lock:
            self._items.pop(fleet_id, None)
