"""A model's phone-readiness report as the API shows it."""

from __future__ import annotations

from pydantic import Field

from app.schemas.common import Schema
from app.schemas.examples import MODEL_ID, SHA256, example

_OPS = {"subgraphs": [3, 4], "builtin": {"FULLY_CONNECTED": 1, "MUL": 6},
        "flex": {"ReluGrad": 1}, "custom": {}}
_TIMING = {"train_batch": 32, "train_ms_per_example": 0.0051, "train_ms_per_step": 0.163,
           "infer_batch": 32, "infer_ms_per_batch": 0.052}
_DEVICE = {"name": "mid_range", "slowdown": 12.0, "train_ms_per_step": 1.96,
           "infer_ms_per_batch": 0.62, "model_download_s": 0.81,
           "checkpoint_download_s": 0.75, "checkpoint_upload_s": 0.99,
           "train_joules_per_step": 0.0049}
_BUILD = {"build": "select_tf_ops", "label": "Built-in ops + TF ops",
          "cpp_binary_bytes": 24117248, "android_apk_bytes": 8388608,
          "published": "23.0 MB C++ binary, 8.0 MB Android APK", "applies": True}
_AAR = {"model": "i3d-kinetics-400", "arch": "arm64-v8a", "builtin_aar_bytes": 273713,
        "select_tf_ops_aar_bytes": 2339697}
_SOURCE = {"title": "Select TensorFlow operators",
           "url": "https://www.tensorflow.org/lite/guide/ops_select"}
_SHIPPING = {
    "needs_select_tf_ops": True, "runtime": [_BUILD], "selective_aar": [_AAR],
    "selective_build": "sh tensorflow/lite/tools/build_aar.sh --input_models=model.tflite "
                       "--target_archs=arm64-v8a,armeabi-v7a",
    "gradle": ['implementation("org.tensorflow:tensorflow-lite:2.16.1")',
               'implementation("org.tensorflow:tensorflow-lite-select-tf-ops:2.16.1")'],
    "cocoapods": ["pod 'TensorFlowLiteSwift', '~> 2.16'",
                  "pod 'TensorFlowLiteSelectTfOps', '~> 2.16'"],
    "ios_linker_flags": ["-force_load $(SRCROOT)/Pods/TensorFlowLiteSelectTfOps/Frameworks/"
                         "TensorFlowLiteSelectTfOps.framework/TensorFlowLiteSelectTfOps"],
    "sources": [_SOURCE], "retrieved": "2026-12-05"}


class SignatureOps(Schema):
    """One signature's operators with their counts, read from the model's flatbuffer."""

    model_config = example(_OPS)

    subgraphs: list[int] = Field(description="The signature's subgraph, then those it calls")
    builtin: dict[str, int] = Field(description="TFLite built-in operators")
    flex: dict[str, int] = Field(description="Select TF (Flex) ops, without the Flex prefix")
    custom: dict[str, int] = Field(description="Other custom ops: the app registers them")


class ModelTiming(Schema):
    """Step times measured on this server."""

    model_config = example(_TIMING)

    train_batch: int
    train_ms_per_example: float | None
    train_ms_per_step: float | None
    infer_batch: int
    infer_ms_per_batch: float | None


class DeviceEstimate(Schema):
    """What one device class of GET /v1/devices implies for this model."""

    model_config = example(_DEVICE)

    name: str
    slowdown: float | None
    train_ms_per_step: float | None
    infer_ms_per_batch: float | None = Field(description="The class's train slowdown applied "
                                             "to this server's infer time")
    model_download_s: float
    checkpoint_download_s: float
    checkpoint_upload_s: float
    train_joules_per_step: float | None


class RuntimeBuild(Schema):
    """A build of the TFLite runtime in TensorFlow's published table."""

    model_config = example(_BUILD)

    build: str
    label: str
    cpp_binary_bytes: int
    android_apk_bytes: int
    published: str
    applies: bool = Field(description="Whether this model can run on that build")


class SelectiveAar(Schema):
    """A selectively built AAR of TensorFlow's table."""

    model_config = example(_AAR)

    model: str
    arch: str
    builtin_aar_bytes: int
    select_tf_ops_aar_bytes: int | None


class FigureSource(Schema):
    """Where published figures come from."""

    model_config = example(_SOURCE)

    title: str
    url: str


class Shipping(Schema):
    """What shipping the model costs, and the lines an app's build needs."""

    model_config = example(_SHIPPING)

    needs_select_tf_ops: bool
    runtime: list[RuntimeBuild]
    selective_aar: list[SelectiveAar]
    selective_build: str
    gradle: list[str]
    cocoapods: list[str]
    ios_linker_flags: list[str]
    sources: list[FigureSource]
    retrieved: str


class ModelReport(Schema):
    """A model's phone-readiness report."""

    model_config = example({
        "model_id": MODEL_ID, "name": "mlp", "sha256": SHA256, "model_bytes": 435112,
        "checkpoint_bytes": 407564, "trainable_parameters": 101770, "frozen_parameters": 0,
        "variables": {"dense_1/kernel": [784, 128]}, "signatures": {"train": _OPS},
        "flex_ops": ["ReluGrad", "Restore", "Save"], "flex_beyond_training": [],
        "custom_ops": [], "timing": _TIMING, "devices": [_DEVICE], "shipping": _SHIPPING,
        "notes": ["needs the Select TF ops runtime for ReluGrad, Restore, Save"]})

    model_id: str
    name: str
    sha256: str
    model_bytes: int
    checkpoint_bytes: int = Field(description="The checkpoint the save signature writes")
    trainable_parameters: int = Field(description="Elements of the variables save writes")
    frozen_parameters: int = Field(description="Elements of the floating-point constant "
                                   "weights the infer signature reads")
    variables: dict[str, list[int]]
    signatures: dict[str, SignatureOps]
    flex_ops: list[str]
    flex_beyond_training: list[str] = Field(description="Select TF ops beyond what training "
                                            "needs (checkpoints, gradients, fused losses)")
    custom_ops: list[str]
    timing: ModelTiming
    devices: list[DeviceEstimate]
    shipping: Shipping
    notes: list[str]
