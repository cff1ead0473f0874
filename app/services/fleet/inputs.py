"""What a running fleet reads besides its plan: the model's bytes, the population's examples
and the test set, from the store keys its plan holds (checked against their sha256)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.federated.partition import class_ids
from app.runtime.datasets import read_npz
from app.runtime.signatures import Signatures, numpy_dtype, signatures_from_json
from app.services.context import Context
from app.services.fleet.plan import FleetPlan, Inputs
from app.services.models import get as get_model


@dataclass(frozen=True, eq=False)
class FleetData:
    """A fleet's inputs in memory while it runs; never kept for reads."""

    model: bytes
    signatures: Signatures
    arrays: dict[str, np.ndarray[Any, Any]]  # the infer inputs, in the infer dtypes
    classes: np.ndarray | None  # each example's class id
    test: dict[str, np.ndarray[Any, Any]] | None  # infer inputs and "__classes__"


class InputChanged(Exception):
    """A blob a fleet reads is not the one its plan recorded."""


def read(ctx: Context, item: Inputs) -> bytes:
    """An input's bytes, checked against the plan."""
    data = ctx.store.get(item.key)
    if hashlib.sha256(data).hexdigest() != item.sha256:
        raise InputChanged(f"'{item.id}' is not the file the fleet was created with")
    return data


def load(ctx: Context, plan: FleetPlan) -> FleetData:
    """The model and the examples a fleet measures accuracy on."""
    model = read(ctx, plan.model)
    sigs = signatures_from_json(get_model(ctx, model_id=plan.model.id).signatures)
    infer = sigs["infer"]
    raw = read_npz(read(ctx, plan.dataset)) if plan.output is not None else {}
    arrays = {n: np.ascontiguousarray(raw[n], dtype=numpy_dtype(infer.inputs[n].dtype))
              for n in plan.infer_inputs if n in raw}
    classes = class_ids(raw[plan.label]) if plan.label is not None and raw else None
    test = None
    if plan.test is not None and plan.output is not None:
        traw = read_npz(read(ctx, plan.test))
        test = {n: np.ascontiguousarray(traw[n], dtype=numpy_dtype(infer.inputs[n].dtype))
                for n in plan.infer_inputs}
        assert plan.label is not None
        test["__classes__"] = class_ids(traw[plan.label])
    return FleetData(model, sigs, arrays, classes, test)
