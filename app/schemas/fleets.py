"""Fleets as the API shows them: the spec a client posts, and the fleet, rounds, clients and
report it reads back (docs/api.md, "Fleets" and "Devices on a virtual clock")."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas.asyncfl import AsyncSpec
from app.schemas.common import Schema, Text
from app.schemas.examples import example
from app.schemas.privacy import PrivacySpec
from app.schemas.training import MAX_SEED

_SPEC_EXAMPLE: Any = {
    "model_id": "mdl_01a22e0c5e4a2b8f0d1c2e3f", "dataset_id": "ds_01a22e0c6f7a8b9c0d1e2f30",
    "test_dataset_id": "ds_01a22e0c70818293a4b5c6d7", "label": "y",
    "partition": {"kind": "shards", "classes_per_client": 2}, "clients": 20, "holdout": 0.2,
    "rounds": 10, "clients_per_round": 10, "local_epochs": 1, "batch_size": 16,
    "strategy": {"name": "fedavg"}, "personal": ["dense_2/"], "finetune_epochs": 1, "seed": 7,
}


class FleetSpec(BaseModel):
    """A simulated population of devices trained in federated rounds."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True,
                              json_schema_extra={"examples": [_SPEC_EXAMPLE]})

    name: Text | None = Field(None, max_length=200, description="A name people read in lists, "
                              "pages, legends and compare")
    model_id: Text
    dataset_id: Text = Field(description="The population's examples: arrays named after the "
                             "train signature's inputs, plus any extra arrays")
    test_dataset_id: Text | None = Field(None, description="Pooled held-out examples for the "
                                         "global model's accuracy")
    label: Text | None = Field(None, description='The train input holding the labels (one-hot '
                               'rows or int class ids); default: the input named "y" or "label"')
    partition: dict[str, Any] = Field(default_factory=lambda: {"kind": "iid"}, description=(
        '{"kind": "iid"} | {"kind": "dirichlet", "alpha": 0.5} | {"kind": "shards", '
        '"classes_per_client": 2} | {"kind": "natural", "by": "<extra array>"}'))
    clients: int = Field(10, ge=1, le=1_000_000, description="Devices (natural: from the data)")
    holdout: float = Field(0.0, ge=0.0, lt=1.0, description="Fraction of each client's "
                           "examples kept out of training for its own evaluation")
    rounds: int = Field(10, ge=1, le=100_000)
    clients_per_round: int = Field(10, ge=1, le=1_000_000)
    local_epochs: int = Field(1, ge=1, le=1_000)
    batch_size: int = Field(32, ge=1, le=65_536)
    shuffle: bool = True
    strategy: dict[str, Any] = Field(default_factory=lambda: {"name": "fedavg"}, description=(
        "fedavg; fedavgm (server_lr, momentum); fedadam, fedyogi, fedadagrad (server_lr, "
        "beta_1, beta_2, tau); fedmedian; fedtrimmedavg (beta); local. Defaults as Flower's"))
    personal: list[Text] = Field(default_factory=list, max_length=64, description="Variable "
                                 "name prefixes that stay on each device (FedPer)")
    finetune_epochs: int = Field(0, ge=0, le=1_000, description="Epochs each client trains "
                                 "alone after the last round")
    seed: int = Field(0, ge=0, le=MAX_SEED)
    devices: dict[str, Any] | None = Field(None, description="mix, classes, availability "
                                           "(always | diurnal), min_battery_pct")
    round_deadline_s: float | None = Field(None, gt=0, description="Virtual seconds; an update "
                                           "that would end later is a straggler")
    over_commit: float = Field(1.0, ge=1.0, le=100.0, description="Select ceil(clients_per_round"
                               " x over_commit) eligible clients")
    min_completed: int = Field(1, ge=1, description="Fewer completed updates: round abandoned")
    faults: dict[str, Any] | None = Field(None, description='{"fraction": 0.2, "kind": "noise" '
                                          '| "sign_flip" | "label_flip", "scale": 10.0}')
    privacy: PrivacySpec | None = Field(None, description="User-level DP-FedAvg: clipping, "
                                        "noise and the epsilon budget (docs/api.md, Privacy)")
    mode: Literal["sync", "async"] = Field("sync", description="sync: rounds; async: server "
                                           "updates as devices arrive (FedBuff, FedAsync)")
    async_: AsyncSpec | None = Field(None, alias="async", description="The asynchronous "
                                     "server rule, with mode async")
    accept_failures: bool = Field(True, description="A client update that fails (raises, or "
                                  "ends with non-finite weights or loss) is recorded as "
                                  "`failed` and the round aggregates the others; false: the "
                                  "fleet fails")


class FleetProgress(BaseModel):
    """Where a fleet is: the round under way and its updates, and the rounds finished."""

    model_config = example({"round": 3, "rounds": 10, "updates_done": 4,
                            "updates_in_round": 10, "rounds_done": 2})

    round: int
    rounds: int
    updates_done: int
    updates_in_round: int
    rounds_done: int = 0


class Fleet(Schema):
    """A fleet and its progress."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "id": "flt_01a22e0d1a2b3c4d5e6f7081", "user_id": "alice", "status": "running",
        "spec": _SPEC_EXAMPLE, "progress": {"round": 3, "rounds": 10, "updates_done": 4,
                                            "updates_in_round": 10},
        "global_checkpoint_ids": ["ckpt_01a22e0d2b3c4d5e6f708192"], "error": None,
        "last_round": {"round": 2, "train_loss": 0.64, "global_accuracy": 0.68,
                       "client_accuracy_mean": 0.79},
        "created_at": "2026-11-30T12:00:00Z", "started_at": "2026-11-30T12:00:01Z",
        "finished_at": None}]})

    id: str
    user_id: str
    status: str = Field(description='"queued" | "running" | "paused" | "succeeded" | '
                        '"failed" | "cancelled"')
    spec: dict[str, Any]
    progress: FleetProgress
    global_checkpoint_ids: list[str]
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    last_round: dict[str, Any] | None = Field(
        None, description="The last finished round's train loss and accuracies")
    stopped_reason: str | None = Field(None, description="Why a fleet that succeeded stopped "
                                       "before its last round (e.g. \"privacy budget\")")
    links: dict[str, str] = Field(default_factory=dict)

    def model_post_init(self, _: Any) -> None:
        base = f"/v1/fleets/{self.id}"
        self.links = {"self": base, "events": f"{base}/events", "rounds": f"{base}/rounds",
                      "clients": f"{base}/clients", "report": f"{base}/report",
                      "report_html": f"{base}/report.html"}


class Quantiles(BaseModel):
    """A distribution over clients."""

    model_config = example({"mean": 0.81, "p10": 0.62, "p50": 0.84, "p90": 0.95})

    mean: float
    p10: float
    p50: float
    p90: float


class Round(Schema):
    """One finished round."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "round": 2, "status": "aggregated", "selected": [0, 3, 4, 7, 9, 11],
        "completed": [0, 3, 7, 9], "train_loss": 0.64, "global_accuracy": 0.68,
        "client_accuracy": {"mean": 0.79, "p10": 0.55, "p50": 0.82, "p90": 0.93},
        "checkpoint_id": "ckpt_01a22e0d2b3c4d5e6f708192", "started_at": "2026-11-30T12:00:02Z",
        "finished_at": "2026-11-30T12:00:03Z", "virtual_start_s": 12.4,
        "virtual_end_s": 27.9, "outcomes": {"completed": 4, "straggler": 2,
                                            "dropped_offline": 0, "dropped_battery": 0},
        "bytes_down": 2445384, "bytes_up": 2445384, "energy_j": 61.2,
        "timings": {"updates_s": 0.081, "aggregate_s": 0.006, "evaluate_s": 0.002}}]})

    round: int
    status: str = Field("aggregated", description='"aggregated" | "abandoned"')
    selected: list[int]
    completed: list[int]
    train_loss: float | None
    global_accuracy: float | None
    client_accuracy: Quantiles | None
    checkpoint_id: str
    started_at: datetime
    finished_at: datetime
    virtual_start_s: float
    virtual_end_s: float
    outcomes: dict[str, int]
    bytes_down: int
    bytes_up: int
    energy_j: float
    timings: dict[str, float] | None = Field(
        None, description="Wall seconds on this server: the round's phases (updates, "
        "aggregate, evaluate, commit) and, summed over its updates, their restore, train, "
        "save and read")
    failures: list[dict[str, Any]] = Field(
        default_factory=list, description="The updates that failed (outcome `failed`): "
        "client_id and reason")
    clipping_norm: float | None = Field(None, description="DP-FedAvg: the clipping norm C "
                                        "this round used")
    epsilon: float | None = Field(None, description="DP-FedAvg: epsilon at the spec's delta "
                                  "after this round (null: no noise, or none yet)")
    staleness: dict[str, float] | None = Field(None, description="Async fleets: the "
                                               "staleness of the updates applied, mean and max")


_CLIENT: Any = {"client_id": 3, "key": None, "session_id": "ses_01a22e0d1a2b3c4d5e6f7081_0000003",
           "num_train": 56, "num_holdout": 14, "labels": {"4": 35, "9": 35},
           "rounds_participated": 5, "accuracy_global": 0.71, "accuracy_personal": 0.93,
           "checkpoint_id": "ckpt_01a22e0d3c4d5e6f70819203", "faulty": False,
           "device": "mid_range", "energy_j": 21.7, "battery_pct": 73.4}


class Client(Schema):
    """One simulated device."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_CLIENT]})

    client_id: int
    key: str | None = Field(None, description="natural partition: the client's value")
    session_id: str | None
    num_train: int
    num_holdout: int
    labels: dict[str, int]
    rounds_participated: int
    accuracy_global: float | None
    accuracy_personal: float | None
    checkpoint_id: str | None
    faulty: bool = False
    device: str | None = None
    energy_j: float = 0.0
    battery_pct: float | None = None


_UPDATE: Any = {"round": 2, "start_s": 12.4, "end_s": 19.8, "outcome": "completed",
           "planned_end_s": 19.8, "energy_j": 4.3, "bytes_down": 407564, "bytes_up": 407564,
           "battery_start_pct": 74.1, "battery_end_pct": 73.9}


class TimelineEntry(BaseModel):
    """One of a client's updates on the virtual clock."""

    model_config = example(_UPDATE)

    round: int
    start_s: float
    end_s: float = Field(description="When it stopped: done, dropped, or the round's end")
    outcome: str = Field(description='"completed" | "straggler" | "dropped_offline" | '
                         '"dropped_battery" | "failed"')
    reason: str | None = Field(None, description="Why a failed update failed")
    planned_end_s: float = Field(description="When it would have ended undisturbed")
    energy_j: float
    bytes_down: int
    bytes_up: int
    battery_start_pct: float
    battery_end_pct: float


class ClientDetail(Client):
    """A client with its updates and its availability windows."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [
        {**_CLIENT, "timeline": [_UPDATE], "available": [[0.0, 86400.0]]}]})

    timeline: list[TimelineEntry]
    available: list[tuple[float, float]]


class Report(BaseModel):
    """What a fleet achieved, and for whom."""

    model_config = example({
        "fleet_id": "flt_01a22e0d1a2b3c4d5e6f7081", "rounds": 10,
        "global_accuracy": [0.35, 0.57, 0.68, 0.73, 0.77, 0.8, 0.82, 0.83, 0.84, 0.85],
        "final": {"global_accuracy": 0.85,
                  "client_accuracy_global": {"mean": 0.84, "p10": 0.66, "p50": 0.87,
                                             "p90": 0.97},
                  "client_accuracy_personal": {"mean": 0.95, "p10": 0.86, "p50": 0.97,
                                               "p90": 1.0},
                  "helped": 0.85, "hurt": 0.05, "clients_measured": 20},
        "virtual_hours": 0.31, "time_to_accuracy": {"50%": 24.1, "70%": 52.0, "90%": 113.7},
        "device_classes": {"mid_range": {"clients": 10, "completed": 48, "straggler": 2,
                                         "dropped_offline": 0, "dropped_battery": 0,
                                         "global_accuracy": 0.84,
                                         "personal_accuracy": 0.95}}})

    fleet_id: str
    rounds: int
    global_accuracy: list[float | None]
    final: dict[str, Any] | None = Field(None, description="Once the fleet has succeeded")
    virtual_hours: float | None = None
    virtual_seconds: float | None = None
    epsilon: list[float | None] | None = Field(None, description="DP-FedAvg: epsilon after "
                                               "each round")
    failed_updates: dict[str, Any] | None = Field(
        None, description='{"count": n, "reasons": {reason: n}}: updates recorded as failed')
    time_to_accuracy: dict[str, float | None] = Field(default_factory=dict)
    device_classes: dict[str, dict[str, Any]] = Field(default_factory=dict)


class Comparison(BaseModel):
    """Fleets side by side: each one's accuracy against virtual hours, settings and summary."""

    model_config = example({"fleets": [{
        "fleet_id": "flt_01a22e0d1a2b3c4d5e6f7081", "status": "succeeded",
        "settings": {"strategy": {"name": "fedavg"}, "clients_per_round": 10, "rounds": 3,
                     "round_deadline_s": 30.0, "over_commit": 1.3, "min_completed": 1,
                     "faults": None},
        "hours": [0.008, 0.017, 0.025], "accuracy": [0.41, 0.63, 0.72],
        "summary": {"rounds": 3, "virtual_hours": 0.025, "final_accuracy": 0.72,
                    "best_accuracy": 0.72, "time_to_accuracy": {"50%": 30.1, "70%": 90.0,
                                                                "90%": 90.0},
                    "updates": {"completed": 30, "straggler": 9, "dropped_offline": 0,
                                "dropped_battery": 0},
                    "energy_j": 401.2, "bytes": 31791000}}]})

    fleets: list[dict[str, Any]]


class Catalogue(BaseModel):
    """The built-in device classes, their sources, and the default mix."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "version": 1, "about": "Built-in device classes for the virtual clock.",
        "classes": {"mid_range": {"description": "A 2019 mid-range phone", "slowdown": 12.0,
                                  "down_kbps": 4318.0, "up_kbps": 3286.0, "train_watts": 2.5,
                                  "radio_joules_per_mb": 2.9, "battery_wh": 15.4,
                                  "charge_pct_per_hour": 45.0, "sources": {}}},
        "mix": {"low_end": 0.3, "mid_range": 0.5, "flagship": 0.2}}]})

    classes: dict[str, dict[str, Any]]
    mix: dict[str, float]
