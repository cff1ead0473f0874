"""A fleet spec checked against its model and datasets, and made into its plan: every 422 of
docs/api.md's list is raised here, before anything is written."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.errors import InvalidInput, NotFound
from app.federated import devices as fdevices
from app.federated import faults as ffaults
from app.federated.partition import class_ids, make_clients, partition_spec
from app.federated.strategies import make_strategy
from app.runtime import ckptfile
from app.runtime.datasets import check_against
from app.runtime.signatures import SignatureSpec
from app.schemas.asyncfl import AsyncSpec, check_against_spec
from app.schemas.privacy import PrivacySpec
from app.services import datasets, jobs, models
from app.services.context import Context
from app.services.fleet.plan import FleetPlan, Inputs, freeze, kept
from app.services.privacy import check_spec as check_privacy

LABEL_NAMES = ("y", "label")
OUTPUT_NAMES = ("output", "probabilities", "probs", "logits")
SLOTS = "optimizer/"  # where a converted model's save writes its optimizer's slots
ASYNC_READY = True  # the async loop is wired in (services/fleet/async_loop.py)
PRIVACY_READY = True  # DP-FedAvg is wired into the rounds (services/fleet/private.py)


def build(ctx: Context, *, user_id: str, spec: dict[str, Any]) -> FleetPlan:
    """The plan of a fleet spec (pydantic-checked already); 422 naming the field, or 404
    for a model or dataset the user cannot see. `spec` is not changed."""
    spec = dict(spec)
    model_row = models.get(ctx, model_id=spec["model_id"])
    model = models.load(ctx, model_id=model_row.id)
    train = model.signatures["train"]
    drow = datasets.get(ctx, dataset_id=spec["dataset_id"])
    if drow.user_id != user_id:
        raise NotFound(f"dataset '{drow.id}' not found")
    missing = [n for n in train.inputs if n not in drow.arrays]
    if missing:
        raise InvalidInput(f"dataset_id: the dataset has no array {', '.join(map(repr, missing))}"
                           f" (the train signature takes {', '.join(train.inputs)})")
    check_against(train, {n: drow.arrays[n] for n in train.inputs})
    raw = datasets.read_all(ctx, row=drow)
    datasets.cast_to(train, raw)  # 422 now for values its dtypes cannot hold
    n = drow.num_examples
    label = _label(spec, train)
    needs_label = _needs_label(spec)
    if needs_label and label is None:
        raise InvalidInput(f"label: {needs_label} needs the labels; name the train input that "
                           f"holds them (it has {', '.join(train.inputs)})")
    classes, num_classes = None, 0
    if label is not None:
        classes = class_ids(raw[label])
        num_classes = _num_classes(raw[label], classes)
    part = spec["partition"] = partition_spec(spec["partition"])
    natural = None
    if part["kind"] == "natural":
        natural = raw.get(part["by"])
        if natural is None:
            raise InvalidInput(f"partition.by: the dataset has no array '{part['by']}' (it has "
                               f"{', '.join(sorted(raw))})")
    clients = make_clients(num_examples=n, partition=part, clients=spec["clients"],
                           holdout=spec["holdout"], seed=spec["seed"], labels=classes,
                           natural=natural)
    del raw, natural
    spec["clients"] = len(clients)
    if spec["clients_per_round"] > len(clients):
        raise InvalidInput(f"clients_per_round: {spec['clients_per_round']} is more than the "
                           f"{len(clients)} clients")
    if spec["min_completed"] > spec["clients_per_round"]:
        raise InvalidInput(f"min_completed: {spec['min_completed']} is more than "
                           f"clients_per_round ({spec['clients_per_round']})")
    limit = ctx.settings.max_fleet_updates
    if limit and spec["rounds"] * spec["clients_per_round"] > limit:
        raise InvalidInput(f"rounds, clients_per_round: {spec['rounds']} rounds x "
                           f"{spec['clients_per_round']} clients a round is over the server's "
                           f"limit of {limit} updates (FLEETLITE_MAX_FLEET_UPDATES)")
    strategy = make_strategy(spec["strategy"])
    spec["strategy"] = {"name": strategy.name, **strategy.params}
    _modes(spec, len(clients), strategy.name)
    fixed = jobs.fixed_batch(train)
    if fixed is not None and spec["batch_size"] != fixed:
        raise InvalidInput(f"batch_size: the model's train signature has a fixed batch of "
                           f"{fixed}; batch_size must be {fixed}")
    per_epoch = clients.num_train if fixed is None else (clients.num_train // fixed) * fixed
    if fixed is not None and (per_epoch == 0).any():
        small = int(np.flatnonzero(per_epoch == 0)[0])
        raise InvalidInput(f"batch_size: client {small} has {int(clients.num_train[small])} "
                           f"training examples, fewer than the model's fixed batch of {fixed}")
    initial = models.initial_weights(ctx, model_id=model.id)
    variables = tuple(ckptfile.read(initial, ctx.settings.work_path))
    keep = _keep(spec, strategy.name, variables)
    infer_inputs, output = _infer_io(model.signatures, train, num_classes, label)
    test = _test_set(ctx, user_id, spec, model.signatures["infer"], infer_inputs, label)
    fault = ffaults.make_faults(spec["faults"])
    if fault is not None and fault.kind == "label_flip" and label is None:
        raise InvalidInput("label: label_flip faults need the labels")
    spec["faults"] = None if fault is None else {"kind": fault.kind, "fraction": fault.fraction,
                                                 "scale": fault.scale}
    faulty = frozenset() if fault is None else frozenset(
        int(c) for c in ffaults.faulty_clients(len(clients), fault.fraction, spec["seed"]))
    dev = fdevices.parse_devices(spec["devices"])
    spec["devices"] = dev.to_dict()
    ms = models.train_ms_per_example(ctx, model_id=model.id)
    counts = None
    if classes is not None and num_classes:
        counts = np.zeros((len(clients), num_classes), dtype=np.int64)
        held = clients.client_of >= 0  # shards_per_client leaves a remainder to no client
        np.add.at(counts, (clients.client_of[held], np.minimum(classes[held], num_classes - 1)),
                  1)
    infer_fixed = {t.shape[0] for t in model.signatures["infer"].inputs.values() if t.shape}
    return FleetPlan(
        spec=freeze(spec),
        model=Inputs(model_row.id, model_row.blob_key, model_row.sha256, model_row.size_bytes),
        dataset=Inputs(drow.id, drow.blob_key, drow.sha256, drow.size_bytes), test=test,
        train_inputs=tuple(train.inputs), infer_inputs=infer_inputs, label=label,
        output=output, num_classes=num_classes, fixed_batch=fixed is not None,
        infer_batch=min(infer_fixed - {-1}) if infer_fixed - {-1} else None,
        variables=variables, keep=keep, faults=fault, faulty=faulty, devices=dev,
        device_classes=dev.resolve(ms), class_index=dev.draw(len(clients), spec["seed"]),
        partition=clients, label_counts=counts,
        examples=np.asarray(per_epoch, dtype=np.int64) * spec["local_epochs"])


def _modes(spec: dict[str, Any], clients: int, strategy: str) -> None:
    """The async and privacy blocks checked against the rest of the spec, defaults filled."""
    spec.setdefault("mode", "sync")
    raw = spec.get("async")
    asy = AsyncSpec.model_validate(raw) if raw is not None else None
    check_against_spec(asy, mode=spec["mode"], clients=clients, personal=spec["personal"],
                       strategy_name=strategy, finetune=spec["finetune_epochs"],
                       round_deadline_s=spec["round_deadline_s"],
                       over_commit=spec["over_commit"], min_completed=spec["min_completed"])
    spec["async"] = asy.to_dict() if asy is not None else None
    if spec["mode"] == "async" and not ASYNC_READY:
        raise InvalidInput("mode: asynchronous fleets are not available on this server yet")
    raw = spec.get("privacy")
    if raw is None:
        spec["privacy"] = None
        return
    if spec["mode"] == "async":  # DP-FedAvg's round math has no buffered counterpart here
        raise InvalidInput("privacy: DP-FedAvg clips and noises a synchronous round's mean "
                           "update; async fleets have no private rule yet: leave privacy out "
                           "or use mode 'sync'")
    priv = PrivacySpec.model_validate(raw)
    check_privacy(priv, clients_per_round=spec["clients_per_round"], strategy_name=strategy)
    spec["privacy"] = priv.model_dump(mode="json")
    if not PRIVACY_READY:
        raise InvalidInput("privacy: DP-FedAvg fleets are not available on this server yet")


def _label(spec: dict[str, Any], train: SignatureSpec) -> str | None:
    label = spec.get("label")
    if label is not None:
        if label not in train.inputs:
            raise InvalidInput(f"label: '{label}' is not an input of the train signature (it "
                               f"takes {', '.join(train.inputs)})")
        return str(label)
    found = next((n for n in LABEL_NAMES if n in train.inputs), None)
    spec["label"] = found
    return found


def _needs_label(spec: dict[str, Any]) -> str | None:
    """What in the spec needs labels, in words (None: nothing does)."""
    if spec["partition"].get("kind") in ("shards", "dirichlet"):
        return f"the {spec['partition']['kind']} partition"
    if spec["test_dataset_id"] is not None:
        return "accuracy on test_dataset_id"
    if spec["holdout"] > 0:
        return "accuracy on each client's holdout"
    if (spec.get("faults") or {}).get("kind") == "label_flip":
        return "label_flip faults"
    return None


def _num_classes(raw: np.ndarray, classes: np.ndarray) -> int:
    if raw.ndim == 2 and raw.shape[1] > 1:
        return int(raw.shape[1])
    return int(classes.max()) + 1 if classes.size else 0


def _keep(spec: dict[str, Any], strategy: str, variables: tuple[str, ...]) -> tuple[str, ...]:
    personal = tuple(spec["personal"])
    for prefix in personal:
        if not any(v.startswith(prefix) for v in variables):
            raise InvalidInput(f"personal: '{prefix}' matches no variable of the model (it has "
                               f"{', '.join(variables)})")
    if personal and all(kept(v, personal) for v in variables):
        raise InvalidInput("personal: these prefixes cover every variable, so nothing would be "
                           "aggregated; use the strategy 'local' for devices that train alone")
    if strategy == "local":
        return ("",)
    if any(v.startswith(SLOTS) for v in variables) and SLOTS not in personal:
        personal = (*personal, SLOTS)  # a converted model's optimizer state stays on the device
    return personal


def _infer_io(sigs: dict[str, SignatureSpec], train: SignatureSpec, num_classes: int,
              label: str | None) -> tuple[tuple[str, ...], str | None]:
    infer = sigs["infer"]
    inputs = tuple(infer.inputs)
    outputs = [t for t in infer.outputs.values() if len(t.shape) == 2
               and t.shape[-1] in (num_classes, -1)]
    if label is None or not outputs or not set(inputs) <= set(train.inputs) - {label}:
        return inputs, None  # no accuracy: nothing to compare with, or no class scores
    names = [t.name for t in outputs]
    output = next((o for o in OUTPUT_NAMES if o in names), names[0])
    return inputs, output


def _test_set(ctx: Context, user_id: str, spec: dict[str, Any], infer: SignatureSpec,
              inputs: tuple[str, ...], label: str | None) -> Inputs | None:
    test_id = spec["test_dataset_id"]
    if test_id is None:
        return None
    row = datasets.get(ctx, dataset_id=test_id)
    if row.user_id != user_id:
        raise NotFound(f"dataset '{test_id}' not found")
    assert label is not None  # _needs_label asked for it
    wanted = {*inputs, label}
    missing = sorted(wanted - set(row.arrays))
    if missing:
        raise InvalidInput(f"test_dataset_id: the test dataset has no array "
                           f"{', '.join(map(repr, missing))} "
                           f"(it needs {', '.join(sorted(wanted))})")
    try:
        check_against(infer, {n: row.arrays[n] for n in inputs})
    except InvalidInput as exc:
        raise InvalidInput(f"test_dataset_id: {exc.detail}") from None
    raw = datasets.read_all(ctx, row=row)
    datasets.cast_to(infer, raw)
    class_ids(raw[label])
    return Inputs(row.id, row.blob_key, row.sha256, row.size_bytes)
