"""A model's phone-readiness report as typed, frozen data: built once by
app.services.model_report, shown as JSON by the API and as a page by report_page."""

from __future__ import annotations

from dataclasses import dataclass

from app.runtime.tflite_ops import SignatureOps


@dataclass(frozen=True)
class Timing:
    """The model's step times on this server: train per example (measured at upload by the
    probe child) and per step at `train_batch`; infer per batch of `infer_batch`."""

    train_batch: int
    train_ms_per_example: float | None
    train_ms_per_step: float | None
    infer_batch: int
    infer_ms_per_batch: float | None


@dataclass(frozen=True)
class DeviceEstimate:
    """What one device class of the catalogue implies: its slowdown times this server's
    step, the transfers at its bandwidths, the energy of a train step at its power."""

    name: str
    slowdown: float | None
    train_ms_per_step: float | None
    infer_ms_per_batch: float | None
    model_download_s: float
    checkpoint_download_s: float
    checkpoint_upload_s: float
    train_joules_per_step: float | None


@dataclass(frozen=True)
class RuntimeBuild:
    """One build of the TFLite runtime in TensorFlow's published table; `applies` when this
    model can run on it."""

    build: str
    label: str
    cpp_binary_bytes: int
    android_apk_bytes: int
    published: str
    applies: bool


@dataclass(frozen=True)
class SelectiveAar:
    """One row of TensorFlow's table of selectively built AARs."""

    model: str
    arch: str
    builtin_aar_bytes: int
    select_tf_ops_aar_bytes: int | None


@dataclass(frozen=True)
class Source:
    """Where published figures come from."""

    title: str
    url: str


@dataclass(frozen=True)
class Shipping:
    """What shipping the model in an app costs, and the lines the app's build needs."""

    needs_select_tf_ops: bool
    runtime: tuple[RuntimeBuild, ...]
    selective_aar: tuple[SelectiveAar, ...]
    selective_build: str
    gradle: tuple[str, ...]
    cocoapods: tuple[str, ...]
    ios_linker_flags: tuple[str, ...]
    sources: tuple[Source, ...]
    retrieved: str


@dataclass(frozen=True)
class ModelReport:
    """Everything GET /v1/models/{id}/report answers."""

    model_id: str
    name: str
    sha256: str
    model_bytes: int
    checkpoint_bytes: int
    trainable_parameters: int
    frozen_parameters: int
    variables: dict[str, tuple[int, ...]]
    signatures: dict[str, SignatureOps]
    flex_ops: tuple[str, ...]
    flex_beyond_training: tuple[str, ...]
    custom_ops: tuple[str, ...]
    timing: Timing
    devices: tuple[DeviceEstimate, ...]
    shipping: Shipping
    notes: tuple[str, ...]
