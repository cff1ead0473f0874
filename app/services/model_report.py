"""A model's phone-readiness report: its operators per signature (from the flatbuffer), its
size and its checkpoint's, its parameters, its step times here and on each device class of
the catalogue, and what shipping it in an app costs."""

from __future__ import annotations

import threading
from typing import Any

from app.federated.devices import DeviceClass, catalogue
from app.runtime import report_page
from app.runtime.report_measure import Measured, batch_of, measure, shipping
from app.runtime.report_types import (
    DeviceEstimate,
    ModelReport,
    RuntimeBuild,
    SelectiveAar,
    Shipping,
    Source,
    Timing,
)
from app.runtime.tflite_ops import ModelOps, read_ops
from app.services import models
from app.services.context import Context, LoadedModel

# Measured once per model bytes in this process: infer timings are this server's, and the
# measurement would skew if two ran at once on two cores.
_MEASURED: dict[str, Measured] = {}
_MEASURING = threading.Lock()


def build(ctx: Context, *, model_id: str) -> ModelReport:
    """The report of one model (404 if there is none). Blocking: call off the event loop."""
    row = models.get(ctx, model_id=model_id)
    loaded = models.load(ctx, model_id=model_id)
    ops = read_ops(loaded.data)
    measured = _measure(ctx, row.sha256, loaded)
    train_ms = models.train_ms_per_example(ctx, model_id=model_id)
    train_batch = batch_of(loaded.signatures, "train")
    timing = Timing(train_batch, train_ms, None if train_ms is None else train_ms * train_batch,
                    measured.batch, measured.infer_ms_per_batch)
    ckpt = len(measured.checkpoint)
    devices = tuple(_estimate(c, timing, row.size_bytes, ckpt) for c in catalogue().values())
    return ModelReport(
        model_id=row.id, name=row.name, sha256=row.sha256, model_bytes=row.size_bytes,
        checkpoint_bytes=ckpt, trainable_parameters=measured.trainable_parameters,
        frozen_parameters=ops.frozen_parameters, variables=measured.variables,
        signatures=ops.signatures, flex_ops=tuple(ops.flex_ops),
        flex_beyond_training=tuple(ops.flex_beyond_training),
        custom_ops=tuple(ops.custom_ops), timing=timing, devices=devices,
        shipping=_shipping(ops), notes=tuple(_notes(ops)))


def page(ctx: Context, *, model_id: str) -> str:
    """The report as a page readable offline."""
    return report_page.render(build(ctx, model_id=model_id))


def _measure(ctx: Context, sha256: str, loaded: LoadedModel) -> Measured:
    with _MEASURING:
        found = _MEASURED.get(sha256)
        if found is None:
            weights = models.initial_weights(ctx, model_id=loaded.id)  # save, run once
            found = _MEASURED[sha256] = measure(loaded.data, loaded.signatures,
                                                ctx.settings.work_path, weights)
    return found


def _seconds(size_bytes: int, kbps: float) -> float:
    return size_bytes * 8 / 1000 / kbps


def _estimate(device: DeviceClass, timing: Timing, model_bytes: int, ckpt_bytes: int
              ) -> DeviceEstimate:
    step = ms_per_example = None
    if device.ms_per_example is not None:
        ms_per_example = device.ms_per_example
    elif timing.train_ms_per_example is not None and device.slowdown is not None:
        ms_per_example = device.slowdown * timing.train_ms_per_example
    if ms_per_example is not None:
        step = ms_per_example * timing.train_batch
    # Infer has no measured device figure: the class's train slowdown is applied to it.
    infer = (None if timing.infer_ms_per_batch is None or device.slowdown is None
             else device.slowdown * timing.infer_ms_per_batch)
    return DeviceEstimate(
        name=device.name, slowdown=device.slowdown, train_ms_per_step=step,
        infer_ms_per_batch=infer, model_download_s=_seconds(model_bytes, device.down_kbps),
        checkpoint_download_s=_seconds(ckpt_bytes, device.down_kbps),
        checkpoint_upload_s=_seconds(ckpt_bytes, device.up_kbps),
        train_joules_per_step=None if step is None else device.train_watts * step / 1000)


def _shipping(ops: ModelOps) -> Shipping:
    doc: dict[str, Any] = shipping()
    flex = bool(ops.flex_ops)
    runtime = tuple(RuntimeBuild(applies=(b["build"] != "builtins") if flex else True, **b)
                    for b in doc["runtime"]["builds"])
    aar = doc["selective_aar"]
    android, ios = doc["android"], doc["ios"]
    return Shipping(
        needs_select_tf_ops=flex, runtime=runtime,
        selective_aar=tuple(SelectiveAar(**r) for r in aar["builds"]),
        selective_build=aar["how"],
        gradle=(android["builtins"], android["select_tf_ops"]) if flex else (android["builtins"],),
        cocoapods=(ios["builtins"], ios["select_tf_ops"]) if flex else (ios["builtins"],),
        ios_linker_flags=(ios["linker_flag"],) if flex else (),
        sources=(Source(**doc["runtime"]["source"]), Source(**aar["source"]),
                 Source("Select TF ops in an Android or iOS app", android["source"])),
        retrieved=doc["retrieved"])


def _notes(ops: ModelOps) -> list[str]:
    notes = []
    if ops.flex_beyond_training:
        notes.append("needs Select TF ops beyond what training needs: "
                     f"{', '.join(ops.flex_beyond_training)}; a selective build must keep them, "
                     "and each runs on TensorFlow's kernels, not TFLite's optimized ones")
    if ops.flex_ops:
        notes.append(f"needs the Select TF ops runtime for {', '.join(ops.flex_ops)}: ship "
                     "tensorflow-lite-select-tf-ops (Android) or TensorFlowLiteSelectTfOps "
                     "(iOS), or a selective build of just these ops")
    if ops.custom_ops:
        notes.append(f"uses custom ops {', '.join(ops.custom_ops)}: the app must register "
                     "their kernels, or the interpreter refuses the model")
    return notes
